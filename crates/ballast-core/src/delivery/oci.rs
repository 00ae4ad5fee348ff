//! The image as an OCI image layout, for hosts on the containerd image
//! store. That store cannot load a `docker save` tarball that lacks a
//! layer (it reads every layer tar to learn its digest: "failed to resolve
//! layers"), but it loads an OCI layout whose manifest names each layer by
//! digest, whether or not the blob is in the archive: a layer whose chain
//! the host has unpacked is not read again. So the index, manifest and
//! config are written here, and only the missing layers' blobs are copied
//! from the save tarball. The image is loaded under a name of its own
//! ([`unproven_tag`]) until it is proven to unpack.
//!
//! A layer's blob digest is its diff ID only when its tar is uncompressed,
//! which is what `docker save` writes on the classic store (the machine
//! ballast builds on). An image whose saved layers are compressed (saved
//! from a containerd store) gets no layout: such hosts get the whole save
//! tarball.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::archive::{normalize, Saved};
use crate::engine::config_tag;

/// The repository a loaded layout is named in until a container has been
/// created from it: the release's [`config_tag`] names only images proven
/// to unpack, so a failed or interrupted delivery never leaves a broken
/// image under it (a deploy would then find it and skip delivery).
const UNPROVEN_REPO: &str = "ballast-unproven";

/// `ballast-unproven:<nonce>-sha256-<hex>`: the name a layout of the image
/// of config digest `id` is loaded under by the delivery `nonce` names
/// (one per process and image), so two deliveries of one image to a host
/// never take each other's name away.
pub fn unproven_tag(id: &str, nonce: &str) -> Option<String> {
    config_tag(id)?;
    let hex = id.strip_prefix("sha256:")?;
    Some(format!("{UNPROVEN_REPO}:{nonce}-sha256-{hex}"))
}

/// The config digest an [`unproven_tag`] names.
pub fn config_of_unproven(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix(UNPROVEN_REPO)?.strip_prefix(':')?;
    let (_, hex) = rest.rsplit_once("sha256-")?;
    let id = format!("sha256:{hex}");
    config_tag(&id).map(|_| id)
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The annotation containerd (and so Docker's load) names an image by.
const NAME_ANNOTATION: &str = "io.containerd.image.name";

/// The small files of the layout, written once per image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    index: Vec<u8>,
    manifest: Vec<u8>,
    /// `sha256:…` of the manifest: the image's ID on the containerd store.
    pub manifest_digest: String,
    config: Vec<u8>,
    config_hex: String,
    /// The save tarball's entry holding each layer, and the blob it becomes.
    blobs: HashMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<HashMap<&'a str, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u8,
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u8,
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

impl Layout {
    /// The layout of `saved`, naming the image `name` (its
    /// [`unproven_tag`]); `None` when a layer's blob digest is not known
    /// without reading it (compressed layers).
    pub fn of(saved: &Saved, name: &str) -> Option<Layout> {
        let config_hex = saved.image_id.strip_prefix("sha256:")?.to_string();
        let mut blobs = HashMap::new();
        let mut layers = Vec::with_capacity(saved.layers.len());
        for layer in &saved.layers {
            let hex = layer.diff_id.strip_prefix("sha256:")?;
            // An OCI save names a blob by its digest: it must be the diff
            // ID. A legacy save's `<id>/layer.tar` is always uncompressed.
            if let Some(blob) = layer.data.strip_prefix("blobs/sha256/") {
                if blob != hex {
                    return None;
                }
            }
            blobs.insert(layer.data.clone(), hex.to_string());
            layers.push(Descriptor {
                media_type: LAYER,
                digest: layer.diff_id.clone(),
                size: layer.size,
                annotations: None,
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST,
            config: Descriptor {
                media_type: CONFIG,
                digest: saved.image_id.clone(),
                size: saved.config.len() as u64,
                annotations: None,
            },
            layers,
        };
        let manifest = serde_json::to_vec(&manifest).ok()?;
        let manifest_digest = format!("sha256:{:x}", Sha256::digest(&manifest));
        let index = Index {
            schema_version: 2,
            media_type: INDEX,
            manifests: vec![Descriptor {
                media_type: MANIFEST,
                digest: manifest_digest.clone(),
                size: manifest.len() as u64,
                annotations: Some(HashMap::from([(
                    NAME_ANNOTATION,
                    format!("docker.io/library/{name}"),
                )])),
            }],
        };
        Some(Layout {
            index: serde_json::to_vec(&index).ok()?,
            manifest,
            manifest_digest,
            config: saved.config.clone(),
            config_hex,
            blobs,
        })
    }

    /// Writes the layout to `out`: its small files, then the blob of every
    /// layer of the save tarball `src` whose entry is not in `skip`, each
    /// once. Returns `out` once the archive is complete.
    pub fn write<W: Write>(&self, src: &Path, skip: &HashSet<String>, out: W) -> io::Result<W> {
        let mut builder = tar::Builder::new(out);
        let manifest_hex = &self.manifest_digest["sha256:".len()..];
        let small: [(&str, &[u8]); 4] = [
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &self.index),
            (&format!("blobs/sha256/{}", self.config_hex), &self.config),
            (&format!("blobs/sha256/{manifest_hex}"), &self.manifest),
        ];
        for (path, bytes) in small {
            append(&mut builder, path, bytes.len() as u64, bytes)?;
        }
        let mut wanted: HashMap<&str, &str> = self
            .blobs
            .iter()
            .filter(|(entry, _)| !skip.contains(*entry))
            .map(|(entry, hex)| (entry.as_str(), hex.as_str()))
            .collect();
        let mut written = HashSet::new();
        let mut archive = tar::Archive::new(BufReader::new(File::open(src)?));
        for entry in archive.entries()? {
            if wanted.is_empty() {
                break;
            }
            let mut entry = entry?;
            let path = normalize(&entry.path()?.to_string_lossy());
            let Some(hex) = wanted.remove(path.as_str()) else {
                continue;
            };
            if written.insert(hex) {
                let size = entry.size();
                append(
                    &mut builder,
                    &format!("blobs/sha256/{hex}"),
                    size,
                    &mut entry,
                )?;
            }
        }
        if let Some(missing) = wanted.keys().next() {
            return Err(io::Error::other(format!(
                "the saved image has no {missing} any more"
            )));
        }
        builder.into_inner()
    }
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl io::Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data)
}

#[cfg(test)]
mod tests {
    use super::super::archive::{self, skipped_entries, tests::Fake};
    use super::*;

    /// The fake's save tarball, in a directory removed with it.
    fn saved(fake: &Fake) -> (tempfile::TempDir, std::path::PathBuf, Saved) {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fake.write(dir.path());
        let saved = archive::read(&path).unwrap();
        (dir, path, saved)
    }

    /// Every entry of a tar archive, by path.
    fn entries(bytes: &[u8]) -> HashMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut body = Vec::new();
                io::Read::read_to_end(&mut e, &mut body).unwrap();
                (path, body)
            })
            .collect()
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn the_layout_names_the_image_by_config_and_its_layers_by_diff_id() {
        for oci in [false, true] {
            let fake = Fake {
                layers: vec![b"base".to_vec(), b"app".to_vec()],
                oci,
                repeat_first: false,
            };
            let (_dir, file, saved) = saved(&fake);
            let layout =
                Layout::of(&saved, &unproven_tag(&saved.image_id, "1-a").unwrap()).unwrap();
            let out = layout.write(&file, &HashSet::new(), Vec::new()).unwrap();
            let files = entries(&out);
            let index = json(&files["index.json"]);
            let listed = &index["manifests"][0];
            assert_eq!(listed["digest"], layout.manifest_digest.as_str());
            let hex = saved.image_id.strip_prefix("sha256:").unwrap();
            assert_eq!(
                listed["annotations"][NAME_ANNOTATION],
                format!("docker.io/library/ballast-unproven:1-a-sha256-{hex}")
            );
            let manifest_hex = layout.manifest_digest.strip_prefix("sha256:").unwrap();
            let manifest = &files[&format!("blobs/sha256/{manifest_hex}")];
            assert_eq!(
                format!("sha256:{:x}", Sha256::digest(manifest)),
                layout.manifest_digest
            );
            let manifest = json(manifest);
            assert_eq!(manifest["config"]["digest"], saved.image_id.as_str());
            assert_eq!(files[&format!("blobs/sha256/{hex}")], saved.config);
            for (i, layer) in saved.layers.iter().enumerate() {
                assert_eq!(manifest["layers"][i]["digest"], layer.diff_id.as_str());
                assert_eq!(manifest["layers"][i]["size"], layer.size);
                let blob = &files[&format!("blobs/sha256/{}", &layer.diff_id[7..])];
                assert_eq!(
                    format!("sha256:{:x}", Sha256::digest(blob)),
                    layer.diff_id,
                    "oci: {oci}"
                );
            }
            assert_eq!(files.len(), 4 + saved.layers.len(), "oci: {oci}");
        }
    }

    #[test]
    fn layers_the_host_has_are_left_out_and_a_repeated_one_is_sent_once() {
        let fake = Fake {
            layers: vec![b"base".to_vec(), b"mid".to_vec(), b"base".to_vec()],
            oci: false,
            repeat_first: true,
        };
        let (_dir, file, saved) = saved(&fake);
        let layout = Layout::of(&saved, &unproven_tag(&saved.image_id, "1-a").unwrap()).unwrap();
        let all = entries(&layout.write(&file, &HashSet::new(), Vec::new()).unwrap());
        // base and mid; the top repeats base.
        assert_eq!(all.len(), 4 + 2);
        let skip = skipped_entries(&saved.layers, 1);
        let some = entries(&layout.write(&file, &skip, Vec::new()).unwrap());
        let blob = |l: usize| format!("blobs/sha256/{}", &saved.layers[l].diff_id[7..]);
        assert!(some.contains_key(&blob(1)));
        // The repeated base is still needed by the top layer, so it stays.
        assert!(some.contains_key(&blob(0)));
        let skip = skipped_entries(&saved.layers, 2);
        let fewer = entries(&layout.write(&file, &skip, Vec::new()).unwrap());
        assert!(!fewer.contains_key(&blob(1)), "mid is on the host");
        // The manifest still names every layer.
        assert_eq!(fewer["index.json"], all["index.json"]);
    }

    #[test]
    fn unproven_names_are_per_delivery_and_name_their_config() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let a = unproven_tag(&id, "7-0000beef").unwrap();
        assert_eq!(
            a,
            format!("ballast-unproven:7-0000beef-sha256-{}", "ab".repeat(32))
        );
        assert!(a.len() <= 128 + "ballast-unproven:".len(), "a Docker tag");
        assert_ne!(a, unproven_tag(&id, "8-0000beef").unwrap());
        assert_eq!(config_of_unproven(&a), Some(id));
        assert_eq!(unproven_tag("sha256:abc", "n"), None);
        assert_eq!(config_of_unproven("ballast-image:sha256-ab"), None);
        assert_eq!(config_of_unproven("ballast-unproven:n-sha256-zz"), None);
    }

    #[test]
    fn compressed_layers_get_no_layout() {
        let fake = Fake {
            layers: vec![b"base".to_vec()],
            oci: true,
            repeat_first: false,
        };
        let (_dir, _file, mut saved) = saved(&fake);
        assert!(Layout::of(&saved, "n").is_some());
        saved.layers[0].data = format!("blobs/sha256/{}", "c".repeat(64));
        assert_eq!(Layout::of(&saved, "n"), None);
    }
}
