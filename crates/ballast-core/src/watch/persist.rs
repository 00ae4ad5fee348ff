//! The state file (`.ballast/watch-state.json` beside the config, or
//! `--state`): the open incidents and what watch remembers of containers
//! (restarts, backoff, breakers), so a restarted watcher neither forgets an
//! incident nor alerts it again. Written whole to a temporary file in the
//! same directory, then renamed over the old one: a crash leaves the old
//! file or the new, never half of one. Beside them, the releases
//! `watch.auto_rollback` rolled back (or tried to), so that none is rolled
//! back twice; a save of the rest keeps them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::rollback::RolledBack;
use super::watcher::Saved;
use crate::error::{Error, Result};

/// Held while the file is read and written again: the loop and the
/// rollback guard both write it, and neither may drop what the other wrote.
static WRITING: Mutex<()> = Mutex::new(());

/// The file's format; another one is refused rather than misread.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    service: String,
    #[serde(flatten)]
    saved: Saved,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rollbacks: Vec<RolledBack>,
}

/// What the state file at `path` keeps for `service`; nothing yet if
/// there is no file.
pub fn load(path: &Path, service: &str) -> Result<Saved> {
    Ok(read(path, service)?.map(|f| f.saved).unwrap_or_default())
}

/// The releases rolled back (or tried) by watch, as the state file at
/// `path` remembers them for `service`.
pub fn rollbacks(path: &Path, service: &str) -> Result<Vec<RolledBack>> {
    Ok(read(path, service)?
        .map(|f| f.rollbacks)
        .unwrap_or_default())
}

/// Remembers `done` in the state file at `path`, beside the rest.
pub fn note_rollback(path: &Path, service: &str, done: &RolledBack) -> Result<()> {
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut file = read(path, service)?.unwrap_or_else(|| File {
        format: FORMAT,
        service: service.to_string(),
        saved: Saved::default(),
        rollbacks: Vec::new(),
    });
    file.rollbacks.push(done.clone());
    write(path, &file)
}

/// The state file at `path`, checked to be of this format and `service`;
/// `None` if there is none.
fn read(path: &Path, service: &str) -> Result<Option<File>> {
    let step = format!("read the watch state {}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::failed(step, e)),
    };
    let file: File = serde_json::from_str(&text).map_err(|e| {
        Error::input(&step, e).hint(
            "the file is damaged: move it away to start afresh (open incidents are then alerted again)",
        )
    })?;
    if file.format != FORMAT {
        return Err(Error::input(
            &step,
            format_args!("format {} is not {FORMAT}", file.format),
        )
        .hint("it was written by another ballast version: move it away to start afresh"));
    }
    if file.service != service {
        return Err(Error::input(
            &step,
            format_args!("it belongs to service {}, not {service}", file.service),
        )
        .hint("give each service its own state file with --state"));
    }
    Ok(Some(file))
}

/// Writes `saved` for `service` to `path`, atomically, keeping the
/// rollbacks the file already remembers.
pub fn save(path: &Path, service: &str, saved: &Saved) -> Result<()> {
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    // A file that cannot be read is replaced, as before rollbacks were kept.
    let rollbacks = read(path, service)
        .ok()
        .flatten()
        .map(|f| f.rollbacks)
        .unwrap_or_default();
    let file = File {
        format: FORMAT,
        service: service.to_string(),
        saved: saved.clone(),
        rollbacks,
    };
    write(path, &file)
}

/// Writes `file` to `path`, atomically.
fn write(path: &Path, file: &File) -> Result<()> {
    let step = format!("write the watch state {}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::failed(&step, e))?;
    let text = serde_json::to_vec_pretty(file).expect("the state serializes");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::failed(&step, e))?;
    tmp.write_all(&text)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::failed(&step, e))?;
    tmp.persist(path)
        .map_err(|e| Error::failed(&step, e.error))?;
    Ok(())
}

/// A map written as a list of pairs: JSON keys are strings only.
pub(crate) mod pairs {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<
        'de,
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    >(
        d: D,
    ) -> std::result::Result<BTreeMap<K, V>, D::Error> {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::assess::Track;
    use super::super::incident::Incident;
    use super::super::{Key, Subject};
    use super::*;

    #[test]
    fn the_state_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ballast/watch-state.json");
        assert_eq!(load(&path, "shop").unwrap(), Saved::default());
        let mut saved = Saved::default();
        let subject = Subject::Role("web".into());
        let key = Key::container("h1", &subject);
        saved.book.open.insert(
            key.clone(),
            Incident {
                tried: vec!["restart shop-web-v1".into()],
                container: Some("shop-web-v1".into()),
                alerted: true,
                ..Incident::new(key, "exited with code 137", 1_000)
            },
        );
        let mut track = Track {
            id: "abc".into(),
            seen_running: true,
            ..Track::default()
        };
        track.backoff.record(1_000);
        track.breaker.restarts.push(1_000);
        saved
            .memory
            .containers
            .insert(("h1".into(), subject), track);
        saved
            .memory
            .locks
            .insert("h1".into(), "held by ana@laptop for deploy".into());
        save(&path, "shop", &saved).unwrap();
        assert_eq!(load(&path, "shop").unwrap(), saved);
        let other = load(&path, "blog").unwrap_err();
        assert!(other.cause.contains("belongs to service shop"), "{other}");
        // A rollback remembered survives the next save of the rest.
        let done = RolledBack {
            role: "web".into(),
            version: "v2".into(),
            at: 2_000,
            outcome: super::super::rollback::Outcome::RolledBack { to: "v1".into() },
        };
        note_rollback(&path, "shop", &done).unwrap();
        save(&path, "shop", &Saved::default()).unwrap();
        assert_eq!(
            rollbacks(&path, "shop").unwrap(),
            std::slice::from_ref(&done)
        );
        assert_eq!(load(&path, "shop").unwrap(), Saved::default());
        save(&path, "shop", &saved).unwrap();
        assert_eq!(rollbacks(&path, "shop").unwrap(), [done]);
        assert_eq!(load(&path, "shop").unwrap(), saved);
        std::fs::write(&path, "{not json").unwrap();
        assert!(load(&path, "shop")
            .unwrap_err()
            .hint
            .unwrap()
            .contains("move it away"));
    }
}
