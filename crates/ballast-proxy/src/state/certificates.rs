//! Persisting the certificates set through the admin API, so a restarted
//! proxy serves them again.
//!
//! One file per service, `certificate.<service>.json`, beside the routes in
//! the `0700` state directory and itself `0600` (it holds a private key),
//! written atomically as the routes are. At start every such file is
//! loaded; one that cannot be read is reported to the caller, which skips it.

use std::fs;

use serde::{Deserialize, Serialize};

use super::{io, StateError, StateStore, FILE_MODE};
use crate::wire::CertificateRequest;
use std::os::unix::fs::PermissionsExt;

/// The certificate files' format version.
const FORMAT: u32 = 1;

/// The file name of `service`'s certificate. Service names are letters,
/// digits, `-`, `_` and `.`: never a path.
fn file_name(service: &str) -> String {
    format!("certificate.{service}.json")
}

/// One certificate file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedCertificate {
    format: u32,
    service: String,
    names: Vec<String>,
    cert_pem: String,
    key_pem: String,
}

impl StateStore {
    /// Saves `certificate`, replacing the service's earlier one atomically.
    pub fn save_certificate(&self, certificate: &CertificateRequest) -> Result<(), StateError> {
        let saved = SavedCertificate {
            format: FORMAT,
            service: certificate.service.clone(),
            names: certificate.names.clone(),
            cert_pem: certificate.cert_pem.clone(),
            key_pem: certificate.key_pem.clone(),
        };
        let mut text = serde_json::to_vec_pretty(&saved).expect("certificates always serialize");
        text.push(b'\n');
        self.write_private(&file_name(&certificate.service), &text)
    }

    /// Deletes `service`'s saved certificate (none saved is fine).
    pub fn remove_certificate(&self, service: &str) -> Result<(), StateError> {
        let path = self.dir.join(file_name(service));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => {
                self.sync_dir();
                Ok(())
            }
        }
    }

    /// Every saved certificate, or why its file cannot be read, sorted by
    /// file name; each file is taken to `0600` on the way.
    pub fn load_certificates(&self) -> Vec<Result<CertificateRequest, StateError>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![Err(io("list", &self.dir)(e))],
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("certificate.") && n.ends_with(".json"))
            })
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))
                    .map_err(io("restrict", &path))?;
                let bytes = fs::read(&path).map_err(io("read", &path))?;
                let corrupt = |reason: String| StateError::CorruptCertificate {
                    path: path.clone(),
                    reason,
                };
                // serde's message could quote the key: only its position.
                let saved: SavedCertificate = serde_json::from_slice(&bytes).map_err(|e| {
                    corrupt(format!(
                        "not a certificate file (line {}, column {})",
                        e.line(),
                        e.column()
                    ))
                })?;
                if saved.format != FORMAT {
                    return Err(corrupt(format!(
                        "format {} where {FORMAT} was expected",
                        saved.format
                    )));
                }
                if file_name(&saved.service)
                    != path.file_name().unwrap_or_default().to_string_lossy()
                {
                    return Err(corrupt(format!(
                        "it names service `{}`, not the one in its file name",
                        saved.service
                    )));
                }
                Ok(CertificateRequest {
                    service: saved.service,
                    names: saved.names,
                    cert_pem: saved.cert_pem,
                    key_pem: saved.key_pem,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(service: &str) -> CertificateRequest {
        CertificateRequest {
            service: service.into(),
            names: vec![format!("{service}.test")],
            cert_pem: "CERT".into(),
            key_pem: "SECRET KEY".into(),
        }
    }

    #[test]
    fn certificates_are_saved_private_loaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state"));
        store.save_certificate(&certificate("b")).unwrap();
        store.save_certificate(&certificate("a")).unwrap();
        let file = dir.path().join("state/certificate.a.json");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded: Vec<_> = store
            .load_certificates()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(loaded, [certificate("a"), certificate("b")]);

        store.remove_certificate("a").unwrap();
        store.remove_certificate("a").unwrap();
        assert_eq!(store.load_certificates().len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_reported_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        fs::write(
            dir.path().join("certificate.a.json"),
            "{\"key_pem\": SECRET",
        )
        .unwrap();
        let loaded = store.load_certificates();
        let err = loaded[0].as_ref().err().unwrap().to_string();
        assert!(err.contains("certificate.a.json cannot be loaded"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }
}
