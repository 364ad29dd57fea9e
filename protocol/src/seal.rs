//! Journal seals: the coordinator's signature over one journal entry's sequence number
//! and hash. An entry's hash covers every entry before it, so a seal vouches for the
//! whole history up to its entry.
//!
//! Seals are the anchors of the journal's length. The coordinator seals the last entry
//! of every batch it commits, and every answer it gives a worker or a member carries the
//! latest seal. A client keeps the highest seal it has seen ([`SealKeeper`]); a
//! coordinator that later offers a shorter history, or a different entry at a sealed
//! position, is caught by [`SealKeeper::check`] and [`SealKeeper::check_known`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::identity::{Keypair, PublicKey, Signature};
use crate::ids::ContentId;

const SEAL_DOMAIN: &str = "icn/journal-seal/v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seal {
    /// The sealed entry's sequence number.
    pub seq: u64,
    /// The sealed entry's hash.
    pub hash: ContentId,
    /// The coordinator's signature over (domain, seq, hash).
    pub signature: Signature,
}

fn signing_bytes(seq: u64, hash: &ContentId) -> Vec<u8> {
    crate::encode(&(SEAL_DOMAIN, seq, hash))
}

impl Seal {
    pub fn sign(key: &Keypair, seq: u64, hash: ContentId) -> Seal {
        Seal { seq, hash, signature: key.sign(&signing_bytes(seq, &hash)) }
    }

    pub fn verify(&self, coordinator: &PublicKey) -> Result<(), Error> {
        coordinator.verify(&signing_bytes(self.seq, &self.hash), &self.signature)
    }

    /// `SEQ:HASH`, the form `icn journal verify --expect` takes.
    pub fn point(&self) -> SealPoint {
        SealPoint { seq: self.seq, hash: self.hash }
    }
}

/// A position in a journal and the hash its entry must have: what a member writes down
/// from a seal and checks a journal against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealPoint {
    pub seq: u64,
    pub hash: ContentId,
}

impl fmt::Display for SealPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl FromStr for SealPoint {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad =
            || Error::invalid(format!("{text:?} is not SEQ:HASH (an entry number, a colon, 64 hex digits)"));
        let (seq, hash) = text.split_once(':').ok_or_else(bad)?;
        Ok(SealPoint { seq: seq.parse().map_err(|_| bad())?, hash: hash.parse().map_err(|_| bad())? })
    }
}

/// Why a coordinator's history does not extend the one a client saw before.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "the coordinator's journal ends at entry {offered}, but it sealed entry {kept} for us before: \
         its history was cut short (restored from an older copy, or entries deleted)"
    )]
    Shorter { kept: u64, offered: u64 },
    #[error(
        "the coordinator's entry {seq} is not the one it sealed for us before (hash {kept} then, {offered} now): \
         its history was rewritten"
    )]
    Different { seq: u64, kept: ContentId, offered: String },
    #[error("a seal that is not the coordinator's: {0}")]
    Forged(String),
}

/// The highest seal a client has seen from one coordinator. Callers that want it to
/// outlive the process store [`SealKeeper::kept`] and hand it back to [`SealKeeper::new`].
#[derive(Debug)]
pub struct SealKeeper {
    coordinator: PublicKey,
    kept: Option<Seal>,
}

impl SealKeeper {
    /// Starts from a seal kept earlier, which must be this coordinator's.
    pub fn new(coordinator: PublicKey, kept: Option<Seal>) -> Result<SealKeeper, HistoryError> {
        if let Some(seal) = &kept {
            seal.verify(&coordinator).map_err(|e| {
                HistoryError::Forged(format!("the kept seal is not coordinator {coordinator}'s: {e}"))
            })?;
        }
        Ok(SealKeeper { coordinator, kept })
    }

    pub fn kept(&self) -> Option<Seal> {
        self.kept
    }

    /// Checks a seal an answer carries and keeps it if it is the highest yet (then
    /// returns true). The same position with another hash means the history was
    /// rewritten. A lower seal is no news: answers on concurrent streams arrive out of
    /// order. A history cut short shows when the client connects again
    /// ([`SealKeeper::check_known`]), since a coordinator cannot lose entries without
    /// restarting.
    ///
    /// The signature is not checked here: answers come over a connection the coordinator
    /// proved it holds (its signed welcome is bound to the TLS session), so what arrives
    /// on it is the coordinator's word; a seal is checked where it crosses a process
    /// boundary instead ([`SealKeeper::new`], [`SealKeeper::check_known`], and the
    /// coordinator's own check of a hello's seal). Checking one signature per answer
    /// cost a fifth of the CPU of the jobs benchmark.
    pub fn check(&mut self, offered: &Seal) -> Result<bool, HistoryError> {
        if let Some(kept) = self.kept {
            if offered.seq < kept.seq {
                return Ok(false);
            }
            if offered.seq == kept.seq && offered.hash != kept.hash {
                return Err(HistoryError::Different {
                    seq: kept.seq,
                    kept: kept.hash,
                    offered: offered.hash.to_string(),
                });
            }
            if offered.seq == kept.seq {
                return Ok(false);
            }
        }
        self.kept = Some(*offered);
        Ok(true)
    }

    /// Checks the coordinator's answer to "what is your seal at the entry I kept": the
    /// same hash, signed by the coordinator, or the history is not the one we saw.
    pub fn check_known(&self, latest: &Seal, known: Option<&Seal>) -> Result<(), HistoryError> {
        let Some(kept) = self.kept else { return Ok(()) };
        latest.verify(&self.coordinator).map_err(|e| HistoryError::Forged(e.to_string()))?;
        if latest.seq < kept.seq {
            return Err(HistoryError::Shorter { kept: kept.seq, offered: latest.seq });
        }
        match known {
            Some(known) if known.seq == kept.seq && known.hash == kept.hash => {
                known.verify(&self.coordinator).map_err(|e| HistoryError::Forged(e.to_string()))
            }
            Some(known) => Err(HistoryError::Different {
                seq: kept.seq,
                kept: kept.hash,
                offered: format!("{} at entry {}", known.hash, known.seq),
            }),
            None => {
                Err(HistoryError::Different { seq: kept.seq, kept: kept.hash, offered: "no seal".into() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &Keypair, seq: u64, tag: &[u8]) -> Seal {
        Seal::sign(key, seq, ContentId::of(tag))
    }

    #[test]
    fn a_seal_verifies_only_under_its_coordinator_and_for_its_position() {
        let coordinator = Keypair::from_seed([1; 32]);
        let sealed = seal(&coordinator, 7, b"entry 7");
        assert!(sealed.verify(&coordinator.public()).is_ok());
        assert!(sealed.verify(&Keypair::from_seed([2; 32]).public()).is_err());
        let moved = Seal { seq: 8, ..sealed };
        assert!(moved.verify(&coordinator.public()).is_err());
    }

    #[test]
    fn a_keeper_refuses_a_rewritten_or_shorter_history() {
        let coordinator = Keypair::from_seed([1; 32]);
        let mut keeper = SealKeeper::new(coordinator.public(), None).unwrap();
        keeper.check(&seal(&coordinator, 5, b"a")).unwrap();
        assert!(keeper.check(&seal(&coordinator, 9, b"b")).unwrap());
        assert!(!keeper.check(&seal(&coordinator, 9, b"b")).unwrap());
        assert_eq!(keeper.kept().unwrap().seq, 9);
        assert!(
            !keeper.check(&seal(&coordinator, 8, b"c")).unwrap(),
            "a late answer's older seal is no news"
        );
        assert!(matches!(
            keeper.check(&seal(&coordinator, 9, b"x")),
            Err(HistoryError::Different { seq: 9, .. })
        ));
        assert_eq!(keeper.kept().unwrap().seq, 9, "a refused seal is not kept");
        // Asked for its seal at entry 9, the coordinator must show the same one.
        let latest = seal(&coordinator, 12, b"d");
        assert!(keeper.check_known(&latest, Some(&seal(&coordinator, 9, b"b"))).is_ok());
        assert!(keeper.check_known(&latest, Some(&seal(&coordinator, 9, b"y"))).is_err());
        assert!(keeper.check_known(&latest, None).is_err());
        assert!(keeper.check_known(&seal(&coordinator, 3, b"e"), None).is_err());
        // At connect, seals are checked against the coordinator's key.
        let forger = Keypair::from_seed([3; 32]);
        let forged = seal(&forger, 9, b"b");
        assert!(matches!(keeper.check_known(&latest, Some(&forged)), Err(HistoryError::Forged(_))));
        assert!(matches!(keeper.check_known(&seal(&forger, 12, b"d"), None), Err(HistoryError::Forged(_))));
    }

    #[test]
    fn a_keeper_starts_only_from_its_coordinators_seal() {
        let coordinator = Keypair::from_seed([1; 32]);
        let kept = seal(&coordinator, 4, b"a");
        assert_eq!(SealKeeper::new(coordinator.public(), Some(kept)).unwrap().kept(), Some(kept));
        let other = SealKeeper::new(Keypair::from_seed([2; 32]).public(), Some(kept));
        assert!(other.unwrap_err().to_string().contains("is not coordinator"));
    }

    #[test]
    fn seal_points_parse_from_their_display() {
        let point = SealPoint { seq: 42, hash: ContentId::of(b"x") };
        assert_eq!(point.to_string().parse::<SealPoint>().unwrap(), point);
        assert!("42".parse::<SealPoint>().is_err());
        assert!("x:ab".parse::<SealPoint>().is_err());
    }
}
