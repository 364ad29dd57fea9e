//! Key files: the 32-byte secret seed as hex on one line. A key file is created with
//! permissions 0600 and refused on load when group or others can read it, as ssh does,
//! because whoever reads it can sign ballots, submissions and results in its owner's name.

use std::io::Write;
use std::path::Path;

use icn_protocol::Keypair;

use crate::Error;

/// Writes a new key file with mode 0600. Refuses to overwrite an existing file.
pub fn write_new(key: &Keypair, path: &Path) -> Result<(), Error> {
    let bad = |reason: String| Error::KeyFile { path: path.display().to_string(), reason };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| bad(format!("cannot create it ({e}); choose a path that does not exist yet")))?;
    writeln!(file, "{}", hex::encode(key.seed())).map_err(|e| bad(e.to_string()))?;
    file.sync_all().map_err(|e| bad(e.to_string()))
}

/// Reads a key file written by [`write_new`].
pub fn read(path: &Path) -> Result<Keypair, Error> {
    let bad = |reason: String| Error::KeyFile { path: path.display().to_string(), reason };
    let metadata = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "its permissions are {mode:o}, readable by others; run `chmod 600 {}`",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| bad("it does not hold a hex-encoded key; make one with `icn keygen`".into()))?;
    let seed: [u8; 32] =
        bytes.try_into().map_err(|_| bad("the key is not 32 bytes; make one with `icn keygen`".into()))?;
    Ok(Keypair::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        let key = Keypair::generate();
        write_new(&key, &path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(read(&path).unwrap().public(), key.public());
        let again = write_new(&key, &path).unwrap_err();
        assert!(again.to_string().contains("does not exist yet"), "{again}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        write_new(&Keypair::generate(), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
