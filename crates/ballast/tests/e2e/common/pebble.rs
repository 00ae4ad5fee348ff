//! Pebble, Debian's ACME test CA, on a lab's network: a container of the
//! lab host image (already built for the lab, so nothing is fetched) that
//! runs the machine's `/usr/bin/pebble` (`apt-get install pebble`; `.ci/run`
//! installs it). Its HTTPS endpoint has a certificate for its fixed address
//! made here with rcgen, so a config's `acme.ca` can trust it; the names
//! the test orders resolve to lab hosts through the container's
//! `/etc/hosts`, so the CA validates against the real proxies on port 80.
//! The container carries the lab's label: removed with the lab, by
//! [`Drop`], and by `.ci/run`'s sweep.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ballast_lab::Inventory;

use super::tls_load::TestCa;

/// Where Debian's package puts Pebble.
pub const BINARY: &str = "/usr/bin/pebble";

/// A running Pebble.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// PEM of the CA that signed Pebble's HTTPS certificate (for `acme.ca`).
    pub ca_path: PathBuf,
    pub ip: String,
    container: String,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble on `lab`'s network, resolving each (name, ip) of
    /// `hosts`, and waits until its directory answers.
    pub fn start(lab_name: &str, inv: &Inventory, hosts: &[(&str, &str)]) -> Pebble {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: install Debian's ACME test CA with `apt-get install pebble`"
        );
        let ip = fixed_ip(&inv.subnet);
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let now = super::tls_load::now_unix();
        let (cert, key) = ca.leaf_between(&[ip.as_str()], now - 86_400, now + 30 * 86_400);
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let config = serde_json::json!({"pebble": {
            "listenAddress": "0.0.0.0:14000",
            "managementListenAddress": "0.0.0.0:15000",
            "certificate": "/pebble/cert.pem",
            "privateKey": "/pebble/key.pem",
            // Where the lab hosts' proxies answer HTTP-01.
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let container = format!("{lab_name}-pebble");
        let mut run = Command::new("docker");
        run.args(["run", "-d", "--name", &container])
            .args(["--label", &format!("io.ballast.lab={lab_name}")])
            .args(["--network", &inv.network, "--ip", &ip])
            .args(["-v", &format!("{BINARY}:{BINARY}:ro")])
            .args(["-v", &format!("{}:/pebble:ro", dir.path().display())])
            // No pause before validating, and no nonces refused on purpose:
            // a quick, deterministic CA.
            .args([
                "-e",
                "PEBBLE_VA_NOSLEEP=1",
                "-e",
                "PEBBLE_WFE_NONCEREJECT=0",
            ]);
        for (name, host_ip) in hosts {
            run.args(["--add-host", &format!("{name}:{host_ip}")]);
        }
        run.arg(ballast_lab::recipe::image_tag())
            .args([BINARY, "-config", "/pebble/config.json"]);
        let out = run.output().unwrap();
        assert!(out.status.success(), "start pebble: {}", super::text(&out));
        let pebble = Pebble {
            directory: format!("https://{ip}:14000/dir"),
            ca_path,
            ip,
            container,
            _dir: dir,
        };
        pebble.wait_ready();
        pebble
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "3", "--cacert"])
                .arg(&self.ca_path)
                .arg(&self.directory)
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let logs = Command::new("docker")
                    .args(["logs", &self.container])
                    .output()
                    .unwrap();
                panic!(
                    "pebble did not answer at {}: {}\n{}",
                    self.directory,
                    super::text(&out),
                    super::text(&logs)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Pebble's log, for a failure message.
    pub fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "40", &self.container])
            .output()
            .unwrap();
        super::text(&out)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.container])
            .output();
    }
}

/// An address of the lab's subnet that no lab host takes (they count up
/// from .11).
fn fixed_ip(subnet: &str) -> String {
    let network = subnet.split('/').next().unwrap();
    let base: std::net::Ipv4Addr = network.parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(base) + 250).to_string()
}
