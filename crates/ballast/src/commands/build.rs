//! `ballast build`: build an image from a context directory on the local engine.

use std::collections::HashMap;

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

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
