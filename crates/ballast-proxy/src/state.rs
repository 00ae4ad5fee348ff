//! Persisting the routing table, so routes survive a proxy restart.
//!
//! The table is written as JSON to `<state_dir>/routes.json`: first to a
//! temporary file in the same directory, flushed to disk, then renamed over
//! the old one, so a crash leaves either the old or the new routes, never a
//! torn file. Pauses are not persisted (they are held for seconds at most);
//! maintenance and body size limits are.
//!
//! Certificates are saved beside the routes, one file per service (see
//! `certificates`).
//!
//! The routes name every service's internal addresses, so they are kept
//! from other users: the directory is made `0700` and the file `0600`, also
//! when they already exist with wider modes ([`StateStore::secure`] at
//! start, and every save).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::table::{BodyLimits, Service, Table};
use crate::target::Target;

mod certificates;

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "routes.json";

/// The format version written; older or newer files are refused.
const FORMAT: u32 = 1;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file or its directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A saved certificate cannot be loaded (it is skipped).
    #[error(
        "{} cannot be loaded ({reason}); hint: set the service's certificate again, or \
         remove the file",
        path.display()
    )]
    CorruptCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not a route table this proxy understands.
    #[error(
        "{} is not a route table this proxy can read ({reason}); \
         hint: move it aside to start with no routes, then deploy again",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// Format version, to refuse files this proxy does not understand.
    format: u32,
    services: Vec<SavedService>,
}

/// One service as saved.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct SavedService {
    name: String,
    hosts: Vec<String>,
    path_prefix: String,
    targets: Vec<String>,
    maintenance: bool,
    /// Absent in files written before limits existed, and when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_request_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_response_body_bytes: Option<u64>,
}

/// The state directory's mode: its owner only.
const DIR_MODE: u32 = 0o700;
/// The state file's mode: readable and writable by its owner only.
const FILE_MODE: u32 = 0o600;

/// Reads and writes the route table in one state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    /// The directory holding the state file (created when missing).
    dir: PathBuf,
}

impl StateStore {
    /// A store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved table, or an empty one when nothing was saved yet.
    pub fn load(&self) -> Result<Table, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::default()),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if file.format != FORMAT {
            return Err(StateError::Corrupt {
                path,
                reason: format!("format {} where {FORMAT} was expected", file.format),
            });
        }
        let services = file
            .services
            .into_iter()
            .map(|s| {
                let targets = s.targets.into_iter().map(Target::new).collect();
                let mut service = Service::new(s.name, s.hosts, s.path_prefix, targets);
                service.maintenance = s.maintenance;
                service.body_limits = BodyLimits {
                    request: s.max_request_body_bytes,
                    response: s.max_response_body_bytes,
                };
                service
            })
            .collect();
        Ok(Table::new(services))
    }

    /// Saves `table`, replacing the saved one atomically.
    pub fn save(&self, table: &Table) -> Result<(), StateError> {
        let file = StateFile {
            format: FORMAT,
            services: table
                .services()
                .iter()
                .map(|s| SavedService {
                    name: s.name.clone(),
                    hosts: s.hosts.clone(),
                    path_prefix: s.path_prefix.clone(),
                    targets: s.targets.iter().map(|t| t.addr().to_string()).collect(),
                    maintenance: s.maintenance,
                    max_request_body_bytes: s.body_limits.request,
                    max_response_body_bytes: s.body_limits.response,
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&file).expect("state always serializes");
        text.push(b'\n');
        self.write_private(STATE_FILE, &text)
    }

    /// Writes `bytes` to the file `name` in the directory, replacing it
    /// atomically (temporary file, flushed, renamed), readable by the
    /// owner only.
    fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.secure()?;
        let path = self.dir.join(name);
        let temp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&temp)
            .map_err(io("create", &temp))?;
        // `mode` only applies to a new file; a stale temporary keeps its own.
        out.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io("restrict", &temp))?;
        out.write_all(bytes).map_err(io("write", &temp))?;
        out.sync_all().map_err(io("flush", &temp))?;
        drop(out);
        fs::rename(&temp, &path).map_err(io("replace", &path))?;
        self.sync_dir();
        Ok(())
    }

    /// Makes a rename or removal in the directory durable.
    fn sync_dir(&self) {
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
    }

    /// Creates the directory when missing, and takes the directory and the
    /// state file (when there is one) to owner-only modes.
    pub fn secure(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(io("restrict", &self.dir))?;
        let path = self.path();
        match fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("restrict", &path)(e)),
            _ => Ok(()),
        }
    }
}

/// A closure turning an I/O error on `path` into a [`StateError`].
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut api = Service::new(
            "api".into(),
            vec!["api.example.com".into()],
            "/v1".into(),
            vec![Target::new("10.0.0.1:80"), Target::new("10.0.0.2:80")],
        );
        api.maintenance = true;
        api.body_limits = BodyLimits {
            request: Some(1 << 20),
            response: None,
        };
        let web = Service::new(
            "web".into(),
            vec![],
            "/".into(),
            vec![Target::new("10.0.0.3:8080")],
        );
        Table::new(vec![api, web])
    }

    type Summary = (String, Vec<String>, String, Vec<String>, bool, BodyLimits);

    fn summary(table: &Table) -> Vec<Summary> {
        table
            .services()
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.hosts.clone(),
                    s.path_prefix.clone(),
                    s.targets.iter().map(|t| t.addr().to_string()).collect(),
                    s.maintenance,
                    s.body_limits,
                )
            })
            .collect()
    }

    #[test]
    fn a_saved_table_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state"));
        store.save(&table()).unwrap();
        assert_eq!(summary(&store.load().unwrap()), summary(&table()));
        // Saving again replaces the file and leaves no temporary behind.
        store.save(&table().without_service("api")).unwrap();
        assert_eq!(store.load().unwrap().services().len(), 1);
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE]);
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_is_kept_from_other_users() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = StateStore::new(&state);
        store.save(&table()).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&store.path()), 0o600);

        // Left world-readable by an older proxy or by hand: tightened at
        // start and by the next save.
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        store.secure().unwrap();
        assert_eq!((mode(&state), mode(&store.path())), (0o700, 0o600));
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o666)).unwrap();
        let stale = state.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
        fs::write(&stale, b"").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        store.save(&table()).unwrap();
        assert_eq!((mode(&state), mode(&store.path())), (0o700, 0o600));
    }

    #[test]
    fn a_file_without_limits_loads_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let old = r#"{"format":1,"services":[{"name":"web","hosts":[],"path_prefix":"/",
            "targets":["10.0.0.3:8080"],"maintenance":false}]}"#;
        fs::write(store.path(), old).unwrap();
        let table = store.load().unwrap();
        let web = table.service("web").unwrap();
        assert_eq!(web.body_limits, BodyLimits::default());
        // Unlimited routes are saved as before.
        store.save(&table).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("max_"), "{text}");
    }

    #[test]
    fn a_missing_file_is_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let table = StateStore::new(dir.path()).load().unwrap();
        assert!(table.services().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        fs::write(store.path(), b"{\"format\":1,").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("routes.json is not a route table"), "{err}");
        assert!(err.contains("hint: move it aside"), "{err}");

        fs::write(store.path(), br#"{"format":9,"services":[]}"#).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("format 9 where 1 was expected"), "{err}");
    }
}
