//! Sending a prepared image to one host: which form it gets and which
//! layers it lacks, the load (streamed from the shared compression, within
//! the deadline), on the containerd store the proof that it unpacks before
//! it is named, and the whole image after a partial attempt that failed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::StreamExt;

use super::{
    archive, pipe, survey, tag, unpack, DeliveryReport, Form, Named, Prepared, Store,
    PIPE_STOP_DEADLINE, PROGRESS_EVERY, SMALL_SEND, SURVEY_DEADLINE,
};
use crate::config::Compression;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::image::ImageEvent;

impl Prepared {
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
