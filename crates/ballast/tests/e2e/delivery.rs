//! End-to-end tests of direct image delivery on real engines: a 2-host lab,
//! images saved once on this machine and sent over SSH with only the layers
//! each host lacks.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::time::Duration;

use bollard::query_parameters::{RemoveImageOptionsBuilder, TagImageOptionsBuilder};

use ballast_core::config::Compression;
use ballast_core::delivery::{self, DeliveryReport, Prepared};
use ballast_core::image::ImageEvent;
use ballast_core::ssh::SshHost;
use ballast_core::Engine;

use common::*;

/// Sends `image` to `to`, checking that progress reached the final count.
async fn deliver(image: &Prepared, to: &Engine) -> DeliveryReport {
    let mut events = Vec::new();
    let report = image
        .send(to, &mut |e| events.push(e))
        .await
        .unwrap_or_else(|e| panic!("{e}\nhint: {:?}", e.hint));
    eprintln!(
        "measure: {} -> {}: {} of {} layers, {} bytes sent{}{}",
        image.reference(),
        report.host,
        report.layers_sent,
        report.layers_total,
        report.bytes_sent,
        if report.full { " (full)" } else { "" },
        if report.skipped { " (skipped)" } else { "" },
    );
    if !report.skipped {
        let last = events.iter().rev().find_map(|e| match e {
            ImageEvent::Sent { host, bytes } if host == to.host() => Some(*bytes),
            _ => None,
        });
        assert_eq!(last, Some(report.bytes_sent), "{events:?}");
    }
    assert_eq!(report.host, to.host());
    assert_eq!(report.image_id, image.image_id());
    report
}

#[test]
fn only_missing_layers_cross_the_wire_and_the_image_runs() {
    require_engine!();
    let v1 = hello_image("dlv-1");
    let v2 = hello_image("dlv-2");
    let v3 = hello_image("dlv-3");
    let lab = Lab::up("delivery", 2);
    let inv = lab.inventory.clone();

    runtime().block_on(async {
        let local = local_engine().await;
        let p1 = delivery::prepare(&local, &v1).await.unwrap();
        let p2 = delivery::prepare(&local, &v2).await.unwrap();
        assert_eq!(
            Some(p2.image_id().to_string()),
            local.image_id(&v2).await.unwrap(),
            "the prepared ID is the engine's"
        );
        let changed: Vec<u64> = p2
            .layers()
            .iter()
            .filter(|l| !p1.layers().iter().any(|o| o.diff_id == l.diff_id))
            .map(|l| l.size)
            .collect();
        assert_eq!(changed.len(), 1, "only /VERSION differs: {:?}", p2.layers());
        let changed_layer_size = changed[0];
        let image_size: u64 = p2.layer_sizes().iter().sum();

        let mut hosts = Vec::new();
        for h in &inv.hosts {
            let ssh = SshHost::connect(&inv.ssh_target(h))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", h.name));
            hosts.push(ssh);
        }
        let (h1, h2) = (hosts[0].engine(), hosts[1].engine());

        // A host with nothing gets every layer.
        let full = deliver(&p1, h1).await;
        assert!(!full.skipped && !full.full, "{full:?}");
        assert_eq!((full.layers_sent, full.layers_total), (2, 2));
        assert!(full.bytes_sent > 100_000, "{full:?}");

        // The next version: only the changed layer crosses.
        let delta = deliver(&p2, h1).await;
        assert!(!delta.skipped && !delta.full, "{delta:?}");
        assert_eq!((delta.layers_sent, delta.layers_total), (1, 2));
        assert!(
            delta.bytes_sent as f64 <= changed_layer_size as f64 * 1.1,
            "sent {} bytes for a changed layer of {changed_layer_size}",
            delta.bytes_sent
        );
        eprintln!(
            "measure: full image {} bytes sent ({image_size} bytes of layers), \
             delta {} bytes sent, changed layer {changed_layer_size} bytes",
            full.bytes_sent, delta.bytes_sent
        );

        // The partially loaded image runs and is the new version.
        assert_eq!(
            h1.image_id(&v2).await.unwrap().as_deref(),
            Some(p2.image_id())
        );
        run_hello(h1, &v2, "hello-delivery", 18080).await;
        let ip1 = &inv.hosts[0].ip;
        let (_, body) =
            wait_http_ok(&format!("http://{ip1}:18080/"), Duration::from_secs(20)).await;
        assert_eq!(body, "dlv-2\n");

        // A host with nothing gets all of the new version.
        let fresh = deliver(&p2, h2).await;
        assert!(!fresh.skipped && !fresh.full, "{fresh:?}");
        assert_eq!((fresh.layers_sent, fresh.layers_total), (2, 2));
        assert!(fresh.bytes_sent > delta.bytes_sent * 10, "{fresh:?}");
        assert_eq!(
            h2.image_id(&v2).await.unwrap().as_deref(),
            Some(p2.image_id())
        );

        // Every compression loads on a real engine: v1's own layer to h2
        // as it is (its bytes are at least the layer's), v3's to h1 at
        // gzip's fast level.
        let plain = delivery::prepare(&local, &v1)
            .await
            .unwrap()
            .with_compression(Compression::None);
        let own = |p: &Prepared| {
            p.layers()
                .iter()
                .filter(|l| !p2.layers().iter().any(|o| o.diff_id == l.diff_id))
                .map(|l| l.size)
                .sum::<u64>()
        };
        let as_is = deliver(&plain, h2).await;
        assert_eq!((as_is.layers_sent, as_is.layers_total), (1, 2));
        assert!(as_is.bytes_sent >= own(&plain), "{as_is:?}");
        assert_eq!(
            h2.image_id(&v1).await.unwrap().as_deref(),
            Some(plain.image_id())
        );
        let fast = delivery::prepare(&local, &v3)
            .await
            .unwrap()
            .with_compression(Compression::GzipFast);
        let gz = deliver(&fast, h1).await;
        assert_eq!((gz.layers_sent, gz.layers_total), (1, 2));
        assert!(gz.bytes_sent as f64 <= own(&fast) as f64 * 1.1, "{gz:?}");
        assert_eq!(
            h1.image_id(&v3).await.unwrap().as_deref(),
            Some(fast.image_id())
        );

        // Sent again: nothing crosses, and a lost tag comes back.
        let docker = h1.docker();
        let keep = TagImageOptionsBuilder::default()
            .repo("hello")
            .tag("kept")
            .build();
        docker.tag_image(&v2, Some(keep)).await.unwrap();
        let untag = RemoveImageOptionsBuilder::default().build();
        docker.remove_image(&v2, Some(untag), None).await.unwrap();
        assert_eq!(h1.image_id(&v2).await.unwrap(), None);
        let again = deliver(&p2, h1).await;
        assert!(again.skipped, "{again:?}");
        assert_eq!((again.layers_sent, again.bytes_sent), (0, 0));
        assert_eq!(
            h1.image_id(&v2).await.unwrap().as_deref(),
            Some(p2.image_id())
        );

        for h in hosts {
            h.close().await.unwrap();
        }
    });
}

#[test]
fn a_missing_image_is_refused_with_a_hint() {
    require_engine!();
    runtime().block_on(async {
        let local = local_engine().await;
        let e = delivery::prepare(&local, "hello:no-such-version")
            .await
            .unwrap_err();
        assert_eq!(e.kind, ballast_core::ErrorKind::NotFound, "{e}");
        assert_eq!(e.host.as_deref(), Some("local"));
        assert!(e.step.contains("hello:no-such-version"), "{e}");
        assert!(e.hint.unwrap().contains("ballast build"));
    });
}
