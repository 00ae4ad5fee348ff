//! `ballast build`: build an image from a context directory on the local engine.

use std::collections::HashMap;

pub use ballast_core::delivery::human_bytes;
use ballast_core::image::{self, BuildSpec, ImageEvent};
use ballast_core::{Engine, Result};

use crate::cli::BuildArgs;
use crate::output::Printer;

pub async fn run(args: BuildArgs, out: &Printer) -> Result<()> {
    let engine = Engine::local().await?;
    let mut spec = BuildSpec::new(&args.context, &args.tag);
    spec.dockerfile = args.file;
    spec.build_args = args.build_args.into_iter().collect::<HashMap<_, _>>();
    out.phase(&format!("building {}", args.tag));
    let built = image::build(&engine, &spec, &mut |event| match event {
        ImageEvent::ContextPacked { files, bytes } => out.progress(
            None,
            &format!("sending context: {files} files, {}", human_bytes(bytes)),
        ),
        ImageEvent::BuildLine(line) => out.progress(None, &line),
        ImageEvent::Sent { host, bytes } => out.progress(Some(&host), &human_bytes(bytes)),
    })
    .await?;
    out.result(
        &serde_json::json!({"tag": built.tag, "id": built.id}),
        &format!("built {} ({})", built.tag, short_id(&built.id)),
    );
    Ok(())
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shown_short() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
