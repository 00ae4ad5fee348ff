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
//! image as an OCI layout without the same layers, named by config digest
//! ([`crate::engine::config_tag`]): that store names images by manifest,
//! and releases are named by config digest. Its load does not fail when a
//! layer is missing after all, so a container is created from the image to
//! prove it unpacks. A partial load that fails either way is followed by
//! the whole image.

pub mod archive;
pub(crate) mod oci;
mod pipe;
mod progress;
pub mod registry;
pub mod survey;
mod tag;
mod unpack;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::config::Compression;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::image::ImageEvent;

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
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let unproven = oci::unproven_tag(
        &saved.image_id,
        &format!("{}-{nanos:08x}", std::process::id()),
    );
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

    /// Sends what `to` lacks and verifies the image is there afterwards
    /// (tagging it as the prepared reference).
    pub async fn send(
        &self,
        to: &Engine,
        on_event: &mut (dyn FnMut(ImageEvent) + Send),
    ) -> Result<DeliveryReport> {
        let mut report = DeliveryReport {
            host: to.host().to_string(),
            image_id: self.saved.image_id.clone(),
            layers_total: self.saved.layers.len(),
            layers_sent: 0,
            bytes_sent: 0,
            full: false,
            skipped: false,
        };
        if let Some(found) = to.resolve_image(self.image_id()).await? {
            let store = match found == self.image_id() {
                true => Store::Classic,
                false => Store::Containerd,
            };
            self.tag(to, store, Named::ByConfig).await?;
            report.skipped = true;
            return Ok(report);
        }
        let store = survey::store(to).await?;
        let form = match (store, &self.oci) {
            (Store::Containerd, Some(_)) => Form::Oci,
            _ => Form::Save,
        };
        let shared = match (store, form) {
            // The containerd store reads every layer of a save tarball.
            (Store::Containerd, Form::Save) => {
                report.full = true;
                0
            }
            _ => {
                let diff_ids: Vec<String> = self
                    .saved
                    .layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .collect();
                match survey::shared_layers(to, &diff_ids, SURVEY_DEADLINE).await {
                    Ok(shared) => shared,
                    // Sending every layer is slower, never wrong; a host
                    // that does not answer, or an interrupt, stops here.
                    Err(e) if matches!(e.kind, ErrorKind::Failed | ErrorKind::Timeout) => {
                        tracing::warn!(host = to.host(), error = %e, "could not tell which layers the host has; sending them all");
                        0
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        report.layers_sent = report.layers_total - shared;
        let skip = archive::skipped_entries(&self.saved.layers, shared);
        match self.attempt(to, store, form, skip, on_event).await {
            Ok(bytes) => report.bytes_sent = bytes,
            // The engine refused the partial archive, or could not unpack
            // it (a shared layer went away meanwhile?): the whole image
            // cannot be refused for that.
            Err((bytes, e)) if shared > 0 && e.kind == ErrorKind::Failed => {
                tracing::warn!(host = to.host(), error = %e, "partial image load failed; sending the whole image");
                report.full = true;
                report.layers_sent = report.layers_total;
                let more = self
                    .attempt(to, store, form, HashSet::new(), on_event)
                    .await
                    .map_err(|(_, e)| e)?;
                report.bytes_sent = bytes + more;
            }
            Err((_, e)) => return Err(e),
        }
        on_event(ImageEvent::Sent {
            host: report.host.clone(),
            bytes: report.bytes_sent,
        });
        Ok(report)
    }

    /// Loads `form` without `skip` on `to`; on the containerd store proves
    /// it unpacks before it gets the names releases find it by; names it.
    /// Returns the compressed bytes sent, also on failure.
    async fn attempt(
        &self,
        to: &Engine,
        store: Store,
        form: Form,
        skip: HashSet<String>,
        on_event: &mut (dyn FnMut(ImageEvent) + Send),
    ) -> Result<u64, (u64, Error)> {
        let bytes = self.load(to, form, skip, on_event).await?;
        let failed = |e: Error| (bytes, e);
        let unproven = match form {
            Form::Oci => self.unproven.as_deref(),
            Form::Save => None,
        };
        if store == Store::Containerd {
            let loaded_as = unproven.unwrap_or(&self.reference);
            let deadline = self.deadline.min(unpack::DEADLINE);
            if let Err(e) = unpack::check(to, loaded_as, deadline).await {
                if let Some(unproven) = unproven {
                    tag::untag(to, unproven).await;
                }
                return Err(failed(e));
            }
        }
        // A failed promotion keeps the unproven name: it may be the proven
        // image's only one (prune counts it as ballast's).
        if let Some(unproven) = unproven {
            self.promote(to, unproven).await.map_err(failed)?;
        }
        let named = match form {
            Form::Save => Named::ByReference,
            Form::Oci => Named::ByConfig,
        };
        let outcome = self.tag(to, store, named).await;
        // Its config tag holds it now.
        if let Some(unproven) = unproven {
            tag::untag(to, unproven).await;
        }
        outcome.map(|()| bytes).map_err(failed)
    }

    /// Streams `form` without `skip` into `to`'s image load, within the
    /// deadline. Returns the compressed bytes sent, also on failure.
    async fn load(
        &self,
        to: &Engine,
        form: Form,
        skip: HashSet<String>,
        on_event: &mut (dyn FnMut(ImageEvent) + Send),
    ) -> Result<u64, (u64, Error)> {
        let step = format!("send image {}", self.reference);
        let host = to.host().to_string();
        let pipe::Reader {
            body,
            sent,
            mut progress,
        } = self.compression(form, skip).reader();
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answers = Box::pin(to.docker().import_image_stream(options, body, None));
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let deadline = tokio::time::sleep(self.deadline);
        tokio::pin!(deadline);
        let mut reported = 0;
        let outcome = loop {
            tokio::select! {
                answer = answers.next() => match answer {
                    None => break Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(to.error(&step, e)),
                },
                _ = tick.tick() => {
                    let now = sent.load(Ordering::Relaxed);
                    if now != reported {
                        reported = now;
                        on_event(ImageEvent::Sent { host: host.clone(), bytes: now });
                    }
                }
                _ = &mut deadline => break Err(Error::timeout(&step, self.deadline).on(&host).hint(
                    "the link to the host may be slow: check it, or give delivery a longer deadline",
                )),
            }
        };
        // Other hosts may still read the compression: it runs on, and is
        // stopped only when the prepared image goes.
        drop(answers);
        let produced = match &outcome {
            Ok(()) => tokio::time::timeout(PIPE_STOP_DEADLINE, progress.outcome()).await,
            // A failed load: the compression's error, if it already has
            // one, is the real cause; it is not waited for.
            Err(_) => Ok(progress.outcome_now().unwrap_or(Ok(()))),
        };
        let bytes = sent.load(Ordering::Relaxed);
        let local = |cause: String| {
            Error::failed(
                &step,
                format_args!("reading the saved image failed: {cause}"),
            )
            .on(&host)
            .hint("check the disk holding the temporary directory (TMPDIR), then deliver again")
        };
        // A thread still busy past PIPE_STOP_DEADLINE is left to end on its
        // own: the engine's answer decides.
        match (produced, outcome) {
            (Ok(Err(e)), _) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err((bytes, local(e.to_string())))
            }
            (_, Err(e)) if e.hint.is_none() => Err((bytes, e.hint(
                "check free space under /var/lib/docker on that host (`df`) and its dockerd logs, then deliver again",
            ))),
            (_, Err(e)) => Err((bytes, e)),
            (_, Ok(())) => Ok(bytes),
        }
    }

    /// How the layers not in `skip` are compressed: `auto` decided by
    /// their size.
    fn codec(&self, skip: &HashSet<String>) -> Compression {
        let sending: u64 = self
            .saved
            .layers
            .iter()
            .filter(|l| !skip.contains(&l.data))
            .map(|l| l.size)
            .sum();
        codec_for(self.compression, sending)
    }

    /// The compression of `form` without `skip`: started by the first
    /// host that needs it, read by every other.
    fn compression(&self, form: Form, skip: HashSet<String>) -> Arc<pipe::Shared> {
        let mut key: Vec<String> = skip.iter().cloned().collect();
        key.sort();
        let mut compressions = self.compressions.lock().unwrap_or_else(|e| e.into_inner());
        let n = compressions.len();
        compressions
            .entry((form, key))
            .or_insert_with(|| {
                let dest = self.dir.path().join(format!("send-{n}.tar"));
                let codec = self.codec(&skip);
                tracing::debug!(?codec, ?form, "compressing the layers to send");
                let written = match form {
                    Form::Save => pipe::Written::Save,
                    Form::Oci => {
                        pipe::Written::Oci(self.oci.clone().expect("chosen only with a layout"))
                    }
                };
                Arc::new(pipe::Shared::start(
                    self.tarball.clone(),
                    written,
                    skip,
                    dest,
                    codec,
                ))
            })
            .clone()
    }
}

/// The compression `chosen` comes to for `sending` bytes of layers.
fn codec_for(chosen: Compression, sending: u64) -> Compression {
    match chosen {
        Compression::Auto if sending < SMALL_SEND => Compression::Gzip,
        Compression::Auto => Compression::GzipFast,
        chosen => chosen,
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

    #[test]
    fn auto_compresses_small_sends_hard_and_big_ones_fast() {
        assert_eq!(codec_for(Compression::Auto, 4 << 20), Compression::Gzip);
        assert_eq!(
            codec_for(Compression::Auto, 400 << 20),
            Compression::GzipFast
        );
        for chosen in [Compression::Gzip, Compression::GzipFast, Compression::None] {
            assert_eq!(codec_for(chosen, 4 << 20), chosen);
            assert_eq!(codec_for(chosen, 400 << 20), chosen);
        }
    }
}
