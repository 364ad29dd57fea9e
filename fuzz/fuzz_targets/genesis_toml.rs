//! A genesis in TOML, as `icn coordinator` reads the founders' file
//! (`icn_governance::Genesis::parse`: `toml::from_str`, then `validate`). A genesis that
//! validates founds a commons: applied as the journal's first event
//! (`Governance::apply`, which asserts every count it derives) it holds exactly the
//! scopes, members and workers it declared; written back as TOML it parses as itself.
#![no_main]

use icn_governance::{Event, Genesis, Governance};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed: Result<Genesis, _> = toml::from_str(text);
    let checked = Genesis::parse(text);
    assert_eq!(checked.is_ok(), parsed.as_ref().is_ok_and(|g| g.validate().is_ok()));
    let Ok(genesis) = checked else { return };
    let written = toml::to_string(&genesis).expect("a genesis writes as TOML");
    let again = Genesis::parse(&written)
        .unwrap_or_else(|e| panic!("{genesis:?} wrote\n{written}\nwhich is refused: {e}"));
    assert_eq!(again, genesis);
    let mut governance = Governance::default();
    governance.apply(0, 0, &Event::Genesis(genesis.clone()));
    assert_eq!(governance.genesis, Some(0));
    assert_eq!(governance.scopes.len(), genesis.scopes.len());
    assert_eq!(governance.members.len(), genesis.members.len());
    assert_eq!(governance.workers.len(), genesis.workers.len());
    for scope in &genesis.scopes {
        assert!(governance.scope(&scope.id).is_ok(), "scope {} was declared", scope.id);
        let lineage = governance.lineage(&scope.id);
        assert!(lineage.len() <= genesis.scopes.len(), "scope {} sits in a cycle", scope.id);
    }
});
