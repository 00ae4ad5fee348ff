//! The `docker save` tarball: reading what it holds (manifest, config, which
//! entry carries which layer) and writing it again without the layers a host
//! already has. Pure file work, no engine: unit-tested on synthetic archives.
//!
//! Both layouts are read through `manifest.json`: the legacy one of Docker ≤ 24
//! (`<id>/layer.tar`, `<id>.json`) and the OCI one of newer engines
//! (`blobs/sha256/<digest>`). Repeated layers may be saved as links to the
//! first copy; a link's target is kept whenever the link is.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// manifest.json and image configs are small; anything bigger is not a save.
const MAX_JSON: u64 = 64 << 20;
/// Links followed before giving up on a cycle.
const MAX_LINK_HOPS: usize = 16;

/// One layer of a saved image, in RootFS order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The sha256 of the uncompressed layer tar, as the image config lists it.
    pub diff_id: String,
    /// Size in bytes of the layer tar inside the save tarball (uncompressed).
    pub size: u64,
    /// The entry manifest.json names for this layer.
    pub(crate) entry: String,
    /// The regular entry holding its bytes: `entry` itself, or what it links to.
    pub(crate) data: String,
}

/// What a save tarball holds, read from its manifest and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// `sha256:` + the digest of the config: the image ID on the classic store.
    pub image_id: String,
    /// Tags recorded in manifest.json (the load applies them).
    pub repo_tags: Vec<String>,
    pub layers: Vec<Layer>,
    /// The image config, byte for byte (its digest is `image_id`).
    pub config: Vec<u8>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(serde::Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// An entry of the tarball as found while scanning it.
#[derive(Debug)]
enum Found {
    /// Regular file: where its bytes start in the tarball, and how many.
    File {
        offset: u64,
        size: u64,
    },
    /// Symbolic link, target relative to the link's directory.
    Symlink(String),
    /// Hard link, target relative to the archive root.
    Hardlink(String),
    Other,
}

/// Reads the manifest and config of the save tarball at `path`. Errors are
/// causes, in words; the caller names host and step.
pub fn read(path: &Path) -> Result<Saved, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let found = scan(&mut file).map_err(|e| format!("not a readable tar archive: {e}"))?;
    let manifest = read_json(&mut file, &found, "manifest.json")?;
    let items: Vec<ManifestItem> =
        serde_json::from_slice(&manifest).map_err(|e| format!("manifest.json: {e}"))?;
    let [item] = <[ManifestItem; 1]>::try_from(items).map_err(|items| {
        format!(
            "manifest.json lists {} images; expected exactly one",
            items.len()
        )
    })?;
    let config_bytes = read_json(&mut file, &found, &normalize(&item.config))?;
    let config: Config = serde_json::from_slice(&config_bytes)
        .map_err(|e| format!("image config {}: {e}", item.config))?;
    let diff_ids = config.rootfs.diff_ids;
    if diff_ids.len() != item.layers.len() {
        return Err(format!(
            "manifest.json names {} layers but the image config lists {}",
            item.layers.len(),
            diff_ids.len()
        ));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (diff_id, entry) in diff_ids.into_iter().zip(item.layers) {
        let entry = normalize(&entry);
        let (data, size) = resolve(&found, &entry)?;
        layers.push(Layer {
            diff_id,
            size,
            entry,
            data,
        });
    }
    Ok(Saved {
        image_id: format!("sha256:{:x}", Sha256::digest(&config_bytes)),
        repo_tags: item.repo_tags.unwrap_or_default(),
        layers,
        config: config_bytes,
    })
}

/// The entries to leave out when the host already has the first `shared`
/// layers: their entries and data, unless a layer still sent needs them.
pub fn skipped_entries(layers: &[Layer], shared: usize) -> HashSet<String> {
    let shared = shared.min(layers.len());
    let needed: HashSet<&str> = layers[shared..]
        .iter()
        .flat_map(|l| [l.entry.as_str(), l.data.as_str()])
        .collect();
    layers[..shared]
        .iter()
        .flat_map(|l| [l.entry.as_str(), l.data.as_str()])
        .filter(|p| !needed.contains(p))
        .map(str::to_string)
        .collect()
}

/// Copies the tarball `src` to `out` without the entries in `skip`, every
/// other entry byte for byte. Returns `out` once the archive is complete.
pub fn write_filtered<W: Write>(src: &Path, skip: &HashSet<String>, out: W) -> io::Result<W> {
    let mut archive = tar::Archive::new(BufReader::new(File::open(src)?));
    let mut builder = tar::Builder::new(out);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let path = entry.path()?.into_owned();
        if skip.contains(&normalize(&path.to_string_lossy())) {
            continue;
        }
        let mut header = entry.header().clone();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()?
                .ok_or_else(|| {
                    io::Error::other(format!("{}: link without target", path.display()))
                })?
                .into_owned();
            builder.append_link(&mut header, &path, &target)?;
        } else {
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    builder.into_inner()
}

fn scan(file: &mut File) -> io::Result<HashMap<String, Found>> {
    file.seek(SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(BufReader::new(&*file));
    let mut found = HashMap::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let kind = entry.header().entry_type();
        let path = normalize(&entry.path()?.to_string_lossy());
        let link = || -> io::Result<String> {
            Ok(entry
                .link_name()?
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default())
        };
        let what = if kind.is_file() || kind == tar::EntryType::Continuous {
            Found::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            }
        } else if kind.is_symlink() {
            Found::Symlink(link()?)
        } else if kind.is_hard_link() {
            Found::Hardlink(link()?)
        } else {
            Found::Other
        };
        found.insert(path, what);
    }
    Ok(found)
}

fn read_json(
    file: &mut File,
    found: &HashMap<String, Found>,
    path: &str,
) -> Result<Vec<u8>, String> {
    let (data, size) = resolve(found, path)?;
    if size > MAX_JSON {
        return Err(format!(
            "{path} is {size} bytes; that is not an image manifest or config"
        ));
    }
    let Some(Found::File { offset, .. }) = found.get(&data) else {
        unreachable!("resolve returns regular files only");
    };
    let mut bytes = Vec::with_capacity(size as usize);
    file.seek(SeekFrom::Start(*offset))
        .and_then(|_| (&*file).take(size).read_to_end(&mut bytes))
        .map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() as u64 != size {
        return Err(format!("{path}: the archive ends inside it"));
    }
    Ok(bytes)
}

/// Follows links from `path` to a regular entry: its path and size.
fn resolve(found: &HashMap<String, Found>, path: &str) -> Result<(String, u64), String> {
    let mut at = path.to_string();
    for _ in 0..MAX_LINK_HOPS {
        match found.get(&at) {
            None if at == path => return Err(format!("the archive has no {path}")),
            None => return Err(format!("{path} links to {at}, which the archive lacks")),
            Some(Found::File { size, .. }) => return Ok((at, *size)),
            Some(Found::Symlink(target)) => {
                let dir = at.rsplit_once('/').map_or("", |(dir, _)| dir);
                at = normalize(&format!("{dir}/{target}"));
            }
            Some(Found::Hardlink(target)) => at = normalize(target),
            Some(Found::Other) => return Err(format!("{at} is not a file")),
        }
    }
    Err(format!("{path}: too many links"))
}

/// `./a/b/../c/` → `a/c`: one spelling per entry, whatever the archiver wrote.
pub(crate) fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic save tarball: what goes in, and in which layout.
    pub(crate) struct Fake {
        pub layers: Vec<Vec<u8>>,
        pub oci: bool,
        /// Save the last layer as a symlink to the first (a repeated layer).
        pub repeat_first: bool,
    }

    pub(crate) fn layer_tar(name: &str, body: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, body).unwrap();
        b.into_inner().unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, body).unwrap();
    }

    impl Fake {
        /// Builds the tarball (manifest.json last, as docker save may) and
        /// returns it with the config's digest.
        pub(crate) fn build(&self) -> (Vec<u8>, String) {
            let diff_ids: Vec<String> = self
                .layers
                .iter()
                .map(|l| format!("sha256:{}", sha(l)))
                .collect();
            let config = serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": { "type": "layers", "diff_ids": diff_ids },
            })
            .to_string();
            let config_id = sha(config.as_bytes());
            let mut b = tar::Builder::new(Vec::new());
            let mut paths = Vec::new();
            let last = self.layers.len() - 1;
            for (i, layer) in self.layers.iter().enumerate() {
                let id = format!("{i:064x}");
                let path = if self.oci {
                    format!("blobs/sha256/{}", sha(layer))
                } else {
                    format!("{id}/layer.tar")
                };
                if self.repeat_first && i == last && i > 0 {
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, &path, format!("../{}", paths[0]))
                        .unwrap();
                } else if !(self.oci && paths.contains(&path)) {
                    if !self.oci {
                        file(&mut b, &format!("{id}/json"), b"{}");
                    }
                    file(&mut b, &path, layer);
                }
                paths.push(path);
            }
            let config_path = if self.oci {
                format!("blobs/sha256/{config_id}")
            } else {
                format!("{config_id}.json")
            };
            file(&mut b, &config_path, config.as_bytes());
            if self.oci {
                file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
            }
            let manifest = serde_json::json!([{
                "Config": config_path, "RepoTags": ["app:2"], "Layers": paths,
            }]);
            file(&mut b, "manifest.json", manifest.to_string().as_bytes());
            (b.into_inner().unwrap(), format!("sha256:{config_id}"))
        }

        pub(crate) fn write(&self, dir: &Path) -> (std::path::PathBuf, String) {
            let (bytes, id) = self.build();
            let path = dir.join("image.tar");
            std::fs::write(&path, bytes).unwrap();
            (path, id)
        }
    }

    fn three(oci: bool, repeat_first: bool) -> Fake {
        Fake {
            layers: vec![
                layer_tar("base", &[7; 5000]),
                layer_tar("app", &[8; 3000]),
                layer_tar("VERSION", b"2\n"),
            ],
            oci,
            repeat_first,
        }
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| normalize(&e.unwrap().path().unwrap().to_string_lossy()))
            .collect()
    }

    #[test]
    fn reads_both_layouts_through_the_manifest() {
        for oci in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let fake = three(oci, false);
            let (path, id) = fake.write(dir.path());
            let saved = read(&path).unwrap();
            assert_eq!(saved.image_id, id);
            assert_eq!(saved.repo_tags, ["app:2"]);
            let sizes: Vec<u64> = saved.layers.iter().map(|l| l.size).collect();
            let expected: Vec<u64> = fake.layers.iter().map(|l| l.len() as u64).collect();
            assert_eq!(sizes, expected, "oci={oci}");
            for (layer, bytes) in saved.layers.iter().zip(&fake.layers) {
                assert_eq!(layer.diff_id, format!("sha256:{}", sha(bytes)));
                assert_eq!(layer.entry, layer.data);
            }
        }
    }

    #[test]
    fn filtering_leaves_out_only_the_shared_layers() {
        for oci in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (path, _) = three(oci, false).write(dir.path());
            let saved = read(&path).unwrap();
            let skip = skipped_entries(&saved.layers, 2);
            let expected: HashSet<String> =
                saved.layers[..2].iter().map(|l| l.entry.clone()).collect();
            assert_eq!(skip, expected);

            let out = write_filtered(&path, &skip, Vec::new()).unwrap();
            let all = names(&std::fs::read(&path).unwrap());
            let kept = names(&out);
            let left_out: Vec<&String> = all.iter().filter(|n| !kept.contains(n)).collect();
            assert_eq!(left_out.len(), 2, "oci={oci}: {left_out:?}");
            assert!(left_out.iter().all(|n| skip.contains(*n)));
            // What is kept is unchanged, and still reads as the same image.
            let filtered = dir.path().join("filtered.tar");
            std::fs::write(&filtered, &out).unwrap();
            let mut a = tar::Archive::new(out.as_slice());
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                let name = normalize(&e.path().unwrap().to_string_lossy());
                if name == saved.layers[2].entry {
                    let mut body = Vec::new();
                    e.read_to_end(&mut body).unwrap();
                    assert_eq!(body, three(oci, false).layers[2]);
                }
            }
            assert!(read(&filtered).is_err(), "the shared layers are gone");
        }
    }

    #[test]
    fn nothing_is_left_out_when_nothing_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = three(false, false).write(dir.path());
        let saved = read(&path).unwrap();
        assert!(skipped_entries(&saved.layers, 0).is_empty());
        let out = write_filtered(&path, &HashSet::new(), Vec::new()).unwrap();
        assert_eq!(names(&out), names(&std::fs::read(&path).unwrap()));
        assert_eq!(skipped_entries(&saved.layers, 3).len(), 3);
        assert_eq!(skipped_entries(&saved.layers, 9).len(), 3);
    }

    #[test]
    fn a_repeated_layer_keeps_the_bytes_it_links_to() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = three(false, true);
        fake.layers[2] = fake.layers[0].clone();
        let (path, _) = fake.write(dir.path());
        let saved = read(&path).unwrap();
        let last = &saved.layers[2];
        assert_ne!(last.entry, last.data);
        assert_eq!(last.data, saved.layers[0].entry);
        assert_eq!(last.size, saved.layers[0].size);
        // Host has layers 1-2: layer 3 is sent as a link, so its target stays.
        assert!(skipped_entries(&saved.layers, 2)
            .iter()
            .all(|p| p == &saved.layers[1].entry));
        let out = write_filtered(&path, &skipped_entries(&saved.layers, 2), Vec::new()).unwrap();
        let kept = names(&out);
        assert!(kept.contains(&saved.layers[0].entry));
        assert!(kept.contains(&last.entry));
    }

    #[test]
    fn broken_archives_are_refused_with_a_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        std::fs::write(&path, layer_tar("a", b"b")).unwrap();
        assert_eq!(read(&path).unwrap_err(), "the archive has no manifest.json");

        // Manifest names a layer the archive does not hold.
        let (good, _) = three(false, false).build();
        let mut a = tar::Archive::new(good.as_slice());
        let mut b = tar::Builder::new(Vec::new());
        let mut dropped = false;
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().into_owned();
            if name.to_string_lossy().ends_with("layer.tar") && !dropped {
                dropped = true;
                continue;
            }
            let mut h = e.header().clone();
            b.append_data(&mut h, &name, &mut e).unwrap();
        }
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let cause = read(&path).unwrap_err();
        assert!(
            cause.starts_with("the archive has no ") && cause.ends_with("/layer.tar"),
            "{cause}"
        );

        std::fs::write(&path, b"not a tar at all, not even close............").unwrap();
        assert!(read(&path).is_err());
    }

    #[test]
    fn paths_have_one_spelling() {
        assert_eq!(normalize("./a/b/../c/"), "a/c");
        assert_eq!(normalize("manifest.json"), "manifest.json");
        assert_eq!(normalize("abc/../../x"), "x");
    }
}
