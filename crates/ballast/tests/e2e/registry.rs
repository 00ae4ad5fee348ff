//! Registry delivery on a real registry: Debian's `docker-registry` in an
//! image built here, with TLS from a CA made in the test and htpasswd
//! auth, on the lab network. `ballast setup` installs the CA on 3 hosts;
//! a deploy with a wrong password fails before any host changes; then
//! hello v1 → v2 → rollback through ballast-proxy under load with 0
//! failed requests, every host pulling by digest exactly the image
//! pushed. Before the rollback one host loses v1 (container and image):
//! the rollback pulls it there again by the digest the release recorded.
//! The password appears in no output (at `-vv` and `RUST_LOG=trace`) and
//! in no `docker inspect` of what runs.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::tls_load::TestCa;
use common::*;

const USER: &str = "deploy";
const PASSWORD: &str = "s3cret-registry-pass-4711";
const WRONG: &str = "not-the-password-0815";

/// The registry's container, and the CA this machine's engine trusts for
/// it; both removed when the test ends.
struct Registry {
    container: String,
    trust: PathBuf,
    server: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.container])
            .output();
        let _ = std::fs::remove_dir_all(&self.trust);
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

/// Starts the registry on the lab's network at `ip`, serving a leaf of
/// `ca` for that address, with one user.
fn start_registry(lab: &Lab, ca: &TestCa, ip: &str, dir: &Path) -> Registry {
    let image = runtime().block_on(async {
        let engine = local_engine().await;
        ballast_lab::registry::ensure_image(&engine).await.unwrap()
    });
    let (cert, key) = ca.leaf(&[ip]);
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("config.yml"), ballast_lab::registry::config_yml()).unwrap();
    let mount = format!("{}:{}", dir.display(), ballast_lab::registry::CONFIG_DIR);
    let htpasswd = format!("{}/htpasswd", ballast_lab::registry::CONFIG_DIR);
    let made = common::browser::run_ok_within(
        {
            let mut c = Command::new("docker");
            c.args([
                "run", "--rm", "-i", "-v", &mount, &image, "htpasswd", "-iBc", &htpasswd, USER,
            ]);
            c
        },
        PASSWORD.as_bytes(),
        Duration::from_secs(60),
    );
    assert!(made.status.success(), "{}", text(&made));
    let server = format!("{ip}:{}", ballast_lab::registry::PORT);
    let trust = PathBuf::from(format!("/etc/docker/certs.d/{server}"));
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::write(trust.join("ca.crt"), &ca.cert_pem).unwrap();
    let container = format!("{}-registry", lab.name);
    let label = format!("io.ballast.lab={}", lab.name);
    let network = lab.inventory.network.clone();
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--label",
        &label,
        "--network",
        &network,
        "--ip",
        ip,
        "-v",
        &format!("{mount}:ro"),
        &image,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let registry = Registry {
        container,
        trust,
        server,
    };
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(
        &registry.server.parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_err()
    {
        assert!(
            Instant::now() < until,
            "the registry did not listen within 30s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    registry
}

fn write_config(dir: &Path, lab: &Lab, server: &str) -> PathBuf {
    let inv = &lab.inventory;
    std::fs::write(
        dir.join("ca.pem"),
        std::fs::read(dir.join("registry/ca.pem")).unwrap(),
    )
    .unwrap();
    let hosts: Vec<&str> = inv.hosts.iter().map(|h| h.ip.as_str()).collect();
    let rest = format!(
        "delivery:
  method: registry
  registry:
    server: \"{server}\"
    username: {USER}
    password_secret: REGISTRY_PASSWORD
    ca: ca.pem
roles:
  web:
    hosts: [{}]
    port: 8080
    proxy:
      drain_timeout: 1s
deploy:
  health_timeout: 20s
",
        hosts.join(", ")
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// `ballast -vv ARGS` with the registry password `password`, traced.
fn run(config: &Path, binary: &Path, password: &str, args: &[&str]) -> Output {
    let mut full = vec!["-vv"];
    full.extend_from_slice(args);
    let mut cmd = ballast_cmd(config, binary, &full);
    cmd.env("REGISTRY_PASSWORD", password)
        .env("RUST_LOG", "trace");
    cmd.output().unwrap()
}

fn says_no_password(out: &Output, password: &str) {
    let all = text(out);
    assert!(!all.contains(password), "the password was shown:\n{all}");
}

/// The containers named hello* on a lab host.
fn hello_containers(container: &str) -> String {
    let out = docker(&[
        "exec",
        container,
        "docker",
        "ps",
        "-a",
        "--format",
        "{{.Names}} {{.Image}}",
        "--filter",
        "name=hello",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn deploys_go_through_a_private_registry_pulled_by_digest() {
    require_engine!();
    let binary = static_ballast();
    for v in ["v1", "v2"] {
        hello_image(v);
    }
    let lab = Lab::up("registry", 3);
    let work = tempfile::tempdir().unwrap();
    let regdir = work.path().join("registry");
    std::fs::create_dir_all(&regdir).unwrap();
    let ca = TestCa::new();
    std::fs::write(regdir.join("ca.pem"), &ca.cert_pem).unwrap();
    let ip = lab
        .inventory
        .subnet
        .split('/')
        .next()
        .unwrap()
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string()
        + ".200";
    let registry = start_registry(&lab, &ca, &ip, &regdir);
    let config = write_config(work.path(), &lab, &registry.server);
    let hosts = &lab.inventory.hosts;

    // setup installs the CA on every host (and a second run changes nothing).
    let out = assert_ok(&["setup"], run(&config, &binary, PASSWORD, &["setup"]));
    says_no_password(&out, PASSWORD);
    for h in hosts {
        let path = format!("/etc/docker/certs.d/{}/ca.crt", registry.server);
        let out = docker(&["exec", &h.container, "cat", &path]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            ca.cert_pem,
            "{}",
            h.ip
        );
    }

    // A wrong password: refused at the push, before any host changes.
    let out = run(&config, &binary, WRONG, &["deploy", "--version", "v1"]);
    let out = assert_refused(
        &["deploy"],
        out,
        &format!(
            "the registry {} refused user deploy's credentials",
            registry.server
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for line in err
        .lines()
        .filter(|l| l.contains('×') || l.contains("help:"))
    {
        eprintln!("wrong password: {line}");
    }
    says_no_password(&out, WRONG);
    for h in hosts {
        assert_eq!(hello_containers(&h.container), "", "{} changed", h.ip);
    }

    // v1, then v2 under load, then rollback: every request answered.
    let began = Instant::now();
    let out = assert_ok(
        &["deploy", "v1"],
        run(&config, &binary, PASSWORD, &["deploy", "--version", "v1"]),
    );
    eprintln!(
        "measure: deploy v1 through the registry to 3 hosts in {:.1}s",
        began.elapsed().as_secs_f64()
    );
    says_no_password(&out, PASSWORD);
    let said = text(&out);
    assert!(
        said.contains(&format!("pushed as {}/hello@sha256:", registry.server)),
        "{said}"
    );
    let rt = runtime();
    let urls: Vec<String> = hosts
        .iter()
        .map(|h| format!("http://{}:80/", h.ip))
        .collect();
    for u in &urls {
        rt.block_on(wait_http_ok(u, Duration::from_secs(20)));
    }
    let load = load::Running::start(&rt, urls.clone(), 100, 8);
    let out = assert_ok(
        &["deploy", "v2"],
        run(&config, &binary, PASSWORD, &["deploy", "--version", "v2"]),
    );
    says_no_password(&out, PASSWORD);
    // Each new container records where its image can be pulled again.
    let sources = docker(&[
        "exec",
        &hosts[2].container,
        "docker",
        "ps",
        "--format",
        "{{.Label \"io.ballast.image-source\"}}",
        "--filter",
        "label=io.ballast.version=v2",
    ]);
    let sources = String::from_utf8_lossy(&sources.stdout);
    assert!(
        sources.starts_with(&format!("{}/hello@sha256:", registry.server)),
        "{sources}"
    );
    // The third host loses v1: its retained container and its image. The
    // rollback pulls v1 there again by the digest the others recorded.
    let lost = docker(&[
        "exec",
        &hosts[2].container,
        "sh",
        "-c",
        "v1=$(docker ps -aq --filter label=io.ballast.version=v1) && \
         id=$(docker inspect --format '{{index .Config.Labels \"io.ballast.image\"}}' $v1 | head -n1) && \
         docker rm -f $v1 >/dev/null && docker rmi -f $id >/dev/null && \
         docker images --format '{{.Repository}}:{{.Tag}}'",
    ]);
    assert!(lost.status.success(), "{}", text(&lost));
    let v1_there = String::from_utf8_lossy(&lost.stdout).to_string();
    assert!(!v1_there.contains(":v1"), "{v1_there}");
    let out = assert_ok(
        &["rollback"],
        run(&config, &binary, PASSWORD, &["rollback"]),
    );
    says_no_password(&out, PASSWORD);
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "{} lacks the image of v1: pulling {}/hello@sha256:",
            hosts[2].ip, registry.server
        )),
        "{said}"
    );
    let report = load.stop(&rt);
    eprintln!(
        "measure: registry deploy v2 + rollback under load: {} requests, {} failed, versions {:?}",
        report.sent, report.failed, report.versions
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(
        report.versions.keys().any(|v| v.contains("v2")),
        "{:?}",
        report.versions
    );

    // Every host pulled exactly the pushed images, by digest, and nothing
    // of the password is in what runs there.
    let local_v2 = docker(&["image", "inspect", "--format", "{{.Id}}", "hello:v2"]);
    let local_v2 = String::from_utf8_lossy(&local_v2.stdout).trim().to_string();
    let pushed = docker(&[
        "image",
        "inspect",
        "--format",
        "{{join .RepoDigests \" \"}}",
        "hello:v2",
    ]);
    let pushed = String::from_utf8_lossy(&pushed.stdout).trim().to_string();
    assert!(
        pushed.contains(&format!("{}/hello@sha256:", registry.server)),
        "{pushed}"
    );
    for h in hosts {
        let out = docker(&[
            "exec",
            &h.container,
            "docker",
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RepoDigests}}",
            &local_v2,
        ]);
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            seen.starts_with(&local_v2),
            "{}: {seen} {}",
            h.ip,
            text(&out)
        );
        assert!(
            pushed.split(' ').any(|d| seen.contains(d)),
            "{}: {seen} lacks {pushed}",
            h.ip
        );
        let inspect = docker(&[
            "exec",
            &h.container,
            "sh",
            "-c",
            "docker inspect $(docker ps -aq)",
        ]);
        assert!(
            !String::from_utf8_lossy(&inspect.stdout).contains(PASSWORD),
            "{}",
            h.ip
        );
        let (_, body) = rt.block_on(wait_http_ok(
            &format!("http://{}:80/", h.ip),
            Duration::from_secs(10),
        ));
        assert!(body.contains("v1"), "{}: after rollback {body}", h.ip);
    }
}
