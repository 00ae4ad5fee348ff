//! Direct image delivery: an image saved once on this machine, then sent to
//! each host with only the layers that host lacks, compressed, over the same
//! engine API every other step uses (no registry, no shell).
//!
//! # Layout
//! - [`archive`]: the `docker save` tarball: what it holds, and a copy of it
//!   without the layers a host already has.
//! - [`survey`]: what a host holds: its image store, its layer chains.
//! - `pipe`: the filtered tarball, compressed once per set of layers left out
//!   and streamed to every host that lacks them as an HTTP body.
//! - [`progress`]: how far each host got, in one line at a time.
//! - `tag`: naming the image on a host once it is there, and checking
//!   the names.
//!
//! A host on the classic image store does not read a layer tar whose chain
//! it already has (LAB.md, "Moving images without a registry"), so the save
//! tarball is sent without the layer tars of the longest start of the image's
//! chain some image there shares. A host on the containerd store gets the
//! image as an OCI layout without the same layers (when its saved layers
//! are uncompressed; else the whole tarball), named by config digest
//! ([`crate::engine::config_tag`]): that store names images by manifest,
//! and releases are named by config digest. Its load does not fail when a
//! layer is missing after all, so a container is created from the image to
//! prove it unpacks before it gets that name. A partial load that fails
//! either way is followed by the whole image.

pub mod archive;
pub(crate) mod oci;
mod pipe;
mod progress;
pub mod registry;
mod send;
pub mod survey;
mod tag;
mod unpack;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::config::Compression;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};

pub use archive::Layer;
pub use oci::config_of_unproven;
pub use progress::{human_bytes, Progress};
pub use survey::Store;
pub use tag::tag_parts;

/// Deadline for saving an image on this machine.
pub const SAVE_DEADLINE: Duration = Duration::from_secs(600);
/// Default deadline for sending an image to one host and loading it there.
pub const SEND_DEADLINE: Duration = Duration::from_secs(1800);
/// Deadline for finding which layers a host already has.
pub const SURVEY_DEADLINE: Duration = Duration::from_secs(120);
/// How often progress is reported while bytes flow.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Below this many bytes of layers to send, `compression: auto` takes
/// gzip's default level (18 MB/s on one core here: under a second) for the
/// fewest bytes; above it, level 1 (over 100 MB/s), so a big image is not
/// held up by its compressor.
const SMALL_SEND: u64 = 16 << 20;
/// How long a finished load waits for the compression to say it ended.
const PIPE_STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A name part no other delivery running now has: this process and the
/// time's nanoseconds.
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:08x}", std::process::id())
}

/// An image saved once on this machine, ready to send to many hosts.
#[derive(Debug)]
pub struct Prepared {
    /// The name the image was asked for by; hosts get it as a tag.
    reference: String,
    /// The `docker save` tarball, read again for every host.
    tarball: PathBuf,
    /// Manifest, config and layers of the tarball.
    saved: archive::Saved,
    /// The name the OCI layout is loaded under until proven
    /// ([`oci::unproven_tag`]), this delivery's own.
    unproven: Option<String>,
    /// The image as an OCI layout, for the containerd store; `None` when
    /// its layers are compressed in the tarball.
    oci: Option<Arc<oci::Layout>>,
    /// How long one host may take to receive and load the image.
    deadline: Duration,
    /// How the layers sent are compressed.
    compression: Compression,
    /// One compression per form and set of layers left out, shared by
    /// every host that gets the same.
    compressions: std::sync::Mutex<BTreeMap<Sending, Arc<pipe::Shared>>>,
    /// Holds the tarball and the compressions; removed with this value.
    dir: tempfile::TempDir,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let compressions = self.compressions.lock().unwrap_or_else(|e| e.into_inner());
        for shared in compressions.values() {
            shared.cancel();
        }
    }
}

/// Which name of the image on a containerd-store host is right when its
/// reference's tag and its config tag disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// A load of the save tarball just gave it the reference's tag.
    ByReference,
    /// The config tag: the host had the image already, or a load of the
    /// OCI layout named it so.
    ByConfig,
}

/// What a compression is of: a form, without these layer entries (sorted).
type Sending = (Form, Vec<String>);

/// The archive a host is sent, each without the layers it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    /// The `docker save` tarball, as the classic store loads it.
    Save,
    /// The OCI layout ([`oci`]), for the containerd store.
    Oci,
}

/// What one delivery did, for output and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryReport {
    pub host: String,
    pub image_id: String,
    /// Layers of the image.
    pub layers_total: usize,
    /// Layers whose tars crossed the wire.
    pub layers_sent: usize,
    /// Compressed bytes sent, over every attempt.
    pub bytes_sent: u64,
    /// Every layer was sent although the host had some: a partial load
    /// failed and the whole image followed, or the host is on the
    /// containerd store and the image's saved layers are compressed.
    pub full: bool,
    /// The host already had the image; only its tag was checked.
    pub skipped: bool,
}

/// Saves `reference` from `from` into a temporary file and reads its
/// manifest, once for all the hosts it will be sent to.
pub async fn prepare(from: &Engine, reference: &str) -> Result<Prepared> {
    let step = format!("save image {reference}");
    let dir = tempfile::Builder::new()
        .prefix("ballast-image-")
        .tempdir()
        .map_err(|e| {
            Error::failed(
                &step,
                format_args!("cannot create a temporary directory: {e}"),
            )
            .hint("set TMPDIR to a writable directory with room for the image")
        })?;
    let tarball = dir.path().join("image.tar");
    let disk_error = |e: std::io::Error| {
        Error::failed(&step, format_args!("{}: {e}", tarball.display())).hint(
            "free space there, or set TMPDIR to a disk with room for the image, then try again",
        )
    };
    let work = async {
        let mut file = tokio::fs::File::create(&tarball)
            .await
            .map_err(disk_error)?;
        let mut chunks = from.docker().export_image(reference);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| from.error(&step, e))?;
            file.write_all(&chunk).await.map_err(disk_error)?;
        }
        file.flush().await.map_err(disk_error)?;
        file.sync_all().await.map_err(disk_error)
    };
    match tokio::time::timeout(SAVE_DEADLINE, work).await {
        Err(_) => {
            return Err(Error::timeout(&step, SAVE_DEADLINE)
                .on(from.host())
                .hint("check that the engine here is healthy (`docker info`) and has disk to spare, then try again"))
        }
        Ok(Err(e)) if e.kind == ErrorKind::NotFound => {
            return Err(e.hint(format!(
                "build it first (`ballast build`), or check the image name {reference:?}"
            )))
        }
        Ok(r) => r?,
    }
    let path = tarball.clone();
    let saved = tokio::task::spawn_blocking(move || archive::read(&path))
        .await
        .map_err(|e| Error::failed(&step, e).on(from.host()))?
        .map_err(|cause| {
            Error::failed(
                &step,
                format_args!("the saved image cannot be read: {cause}"),
            )
            .on(from.host())
            .hint("check that this engine saves images correctly (`docker save`), then try again")
        })?;
    let unproven = oci::unproven_tag(&saved.image_id, &nonce());
    let oci = unproven
        .as_deref()
        .and_then(|name| oci::Layout::of(&saved, name))
        .map(Arc::new);
    Ok(Prepared {
        reference: reference.to_string(),
        tarball,
        unproven,
        oci,
        saved,
        deadline: SEND_DEADLINE,
        compression: Compression::default(),
        compressions: Default::default(),
        dir,
    })
}

impl Prepared {
    /// `sha256:…` of the image config: the image ID on hosts using the
    /// classic store.
    pub fn image_id(&self) -> &str {
        &self.saved.image_id
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The image's layers, bottom first.
    pub fn layers(&self) -> &[Layer] {
        &self.saved.layers
    }

    /// Uncompressed size of each layer tar in the save tarball, bottom first.
    pub fn layer_sizes(&self) -> Vec<u64> {
        self.saved.layers.iter().map(|l| l.size).collect()
    }

    /// Sets how long one host may take to receive and load the image.
    pub fn with_deadline(mut self, deadline: Duration) -> Prepared {
        self.deadline = deadline;
        self
    }

    /// Sets how the layers sent are compressed.
    pub fn with_compression(mut self, compression: Compression) -> Prepared {
        self.compression = compression;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deploys send to many hosts from spawned tasks.
    #[allow(dead_code)]
    fn sending_can_run_on_any_thread(p: &Prepared, to: &Engine) {
        fn is_send<T: Send>(_: T) {}
        is_send(p.send(to, &mut |_| {}));
        is_send(prepare(to, "x"));
    }
}
