//! Accessories on a real 2-host lab: a busybox `store` (built offline, `FROM
//! scratch`) serving its data directory over HTTP on the second host's
//! private address, beside the hello app on both hosts. Bad configs are
//! refused with located errors and change nothing; boot creates the data
//! directory with its owner and mode and copies a file; a file written
//! into the data survives a second boot (which changes nothing), an app
//! deploy, rollback and prune (which never restart the accessory), a
//! reboot, an upgrade, a failed upgrade (the old container keeps serving),
//! a rollback, `ballast remove`, `accessory remove` and a re-boot; deleting
//! the data is refused without confirmation, then done with
//! `--yes-destroy-data=store` and recorded in the audit log with who did it.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ballast_core::host::Host;

use common::*;

const SERVICE: &str = "shelf";
const PORT: u16 = 7000;
const DATA: &str = "/var/lib/ballast/shelf/store/data";
const NEVER_HEALTHY: &str = "bad";

/// Builds `store:VERSION` from this machine's static busybox: an HTTP server
/// of `/data` that writes a boot line there and, unless it is the
/// never-healthy version, the file its health check looks for.
fn store_image(version: &str) -> String {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "this test needs a static busybox: `apt-get install busybox-static`"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
    let healthy = if version == NEVER_HEALTHY {
        ""
    } else {
        "touch /tmp/healthy; "
    };
    let dockerfile = format!(
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/tmp\", \"/data\"]\n\
         CMD [\"/bin/sh\", \"-c\", \"echo booted {version} | tee -a /data/boots.log; {healthy}exec httpd -f -p 8080 -h /data\"]\n"
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let tag = format!("store:{version}");
    let out = Command::new(ballast_bin())
        .args(["build", dir.path().to_str().unwrap(), "--tag", &tag])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "building {tag}:\n{}", text(&out));
    tag
}

/// The config: hello's `web` on both hosts, `store` on the second.
/// `accessory` replaces the store's definition when given.
fn write_config(dir: &Path, lab: &Lab, image: &str, accessory: Option<&str>) -> PathBuf {
    let inv = &lab.inventory;
    let (h1, h2) = (&inv.hosts[0].ip, &inv.hosts[1].ip);
    let store = accessory.map(str::to_string).unwrap_or_else(|| {
        format!(
            "  store:
    image: {image}
    host: {h2}
    env:
      clear: {{STORE_MODE: test}}
      secret: [STORE_TOKEN]
    ports: [\"{h2}:{PORT}:8080\"]
    directories:
      - {{container: /data, owner: \"1000:1000\", mode: \"0750\"}}
    files:
      - {{local: conf/motd.txt, container: /etc/motd.txt, mode: \"0640\"}}
    healthcheck: {{cmd: [test, -f, /tmp/healthy], interval: 300ms, timeout: 2s, retries: 3}}
    health_timeout: 15s
    stop_timeout: 3s
"
        )
    });
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
deploy:
  health_timeout: 10s
  retain: 2
accessories:
{store}"
    );
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/motd.txt"), "hello from the operator\n").unwrap();
    std::fs::create_dir_all(dir.join(".ballast")).unwrap();
    std::fs::write(dir.join(".ballast/secrets"), "STORE_TOKEN=tok-3141\n").unwrap();
    lab_config(dir, inv, &inv.known_hosts, SERVICE, "hello", &rest)
}

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(ballast_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
fn ok(config: &Path, args: &[&str]) -> Output {
    assert_ok(args, run(config, args))
}

/// Fails unless `args` fail with `message` in stderr.
#[track_caller]
fn refused(config: &Path, args: &[&str], message: &str) -> Output {
    assert_refused(args, run(config, args), message)
}

/// The store's container as h2 has it: (id, started at, image ref label).
async fn store_container(h2: &Host, name: &str) -> Option<(String, String, String)> {
    let c = h2
        .engine()
        .docker()
        .inspect_container(name, None)
        .await
        .ok()?;
    let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
    Some((
        c.id.unwrap_or_default(),
        c.state.and_then(|s| s.started_at).unwrap_or_default(),
        labels
            .get("io.ballast.accessory.image")
            .cloned()
            .unwrap_or_default(),
    ))
}

async fn sh(h: &Host, program: &str, args: &[&str]) -> String {
    let out = h
        .run(program, args, None, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(out.success(), "{program} {args:?}: {}", out.stderr);
    out.stdout
}

/// The precious file, read through the store's own HTTP server.
async fn served(h2_ip: &str) -> Result<(u16, String), String> {
    http_get(&format!("http://{h2_ip}:{PORT}/precious.txt")).await
}

#[test]
fn accessories_keep_their_data_through_everything_but_a_confirmed_destroy() {
    require_engine!();
    let started = Instant::now();
    hello_image("v1");
    hello_image("v2");
    for v in ["v1", "v2", NEVER_HEALTHY] {
        store_image(v);
    }
    let lab = Lab::up("accessory", 2);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let rt = runtime();
    let inv = &lab.inventory;
    let h2_ip = inv.hosts[1].ip.clone();
    let h2 = rt
        .block_on(Host::connect(&h2_ip, &inv.ssh_target(&inv.hosts[1])))
        .unwrap();
    let containers = || {
        rt.block_on(sh(
            &h2,
            "docker",
            &["ps", "-a", "--format", "{{.Names}} {{.Image}}"],
        ))
    };
    let name = format!("{SERVICE}-store");
    let previous = format!("{SERVICE}-store-previous");

    // Bad inputs: located errors, nothing on the hosts.
    let before = containers();
    let good = write_config(dir, &lab, "store:v1", None);
    let good_text = std::fs::read_to_string(&good).unwrap();
    let bad = |from: &str, to: &str, message: &str| {
        std::fs::write(&good, good_text.replace(from, to)).unwrap();
        let out = refused(&good, &["accessory", "boot", "store"], message);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("ballast.yml:"),
            "{}",
            text(&out)
        );
    };
    let dir_line = "{container: /data, owner: \"1000:1000\", mode: \"0750\"}";
    bad(
        dir_line,
        "{container: /data, owner: \"1000:1000\", host: data}",
        "host directory `data` is not absolute",
    );
    bad(
        dir_line,
        "{container: /data, owner: \"1000:1000\", host: /srv/store}",
        "is outside /var/lib/ballast/shelf/",
    );
    bad(
        &format!("\"{h2_ip}:{PORT}"),
        &format!("\"0.0.0.0:{PORT}"),
        "listens on every address of the host",
    );
    bad(
        "  store:\n",
        "  web:\n",
        "accessory `web` has the name of a role",
    );
    bad(
        &format!("host: {h2_ip}"),
        &format!("host: root@{h2_ip}"),
        "is not a plain host name",
    );
    std::fs::write(&good, &good_text).unwrap();
    assert_eq!(containers(), before, "a refused config changed a host");
    let config = good;

    // Boot: data directory with its owner and mode, the file, the secret.
    let out = ok(&config, &["accessory", "boot", "store"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("store: booted"),
        "{}",
        text(&out)
    );
    assert_eq!(
        rt.block_on(sh(&h2, "stat", &["-c", "%u:%g %a", DATA]))
            .trim(),
        "1000:1000 750"
    );
    let out = ok(
        &config,
        &["accessory", "exec", "store", "--", "cat", "/etc/motd.txt"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the operator\n"
    );
    let out = run(
        &config,
        &["accessory", "exec", "store", "--", "test", "-f", "/nope"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let env = rt.block_on(sh(
        &h2,
        "docker",
        &["inspect", "-f", "{{json .Config.Env}}", &name],
    ));
    assert!(
        env.contains("STORE_TOKEN=tok-3141") && env.contains("STORE_MODE=test"),
        "{env}"
    );
    let restart = rt.block_on(sh(
        &h2,
        "docker",
        &[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Init}}",
            &name,
        ],
    ));
    assert_eq!(restart.trim(), "always true");
    let precious = format!("{DATA}/precious.txt");
    rt.block_on(async {
        let out = h2
            .run(
                "tee",
                &[&precious],
                Some(b"keep me\n"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(served(&h2_ip).await, Ok((200, "keep me\n".to_string())));
    });
    let intact = |after: &str| {
        let kept = rt.block_on(sh(&h2, "cat", &[&precious]));
        assert_eq!(kept, "keep me\n", "the data was lost after {after}");
    };
    let first = rt.block_on(store_container(&h2, &name)).unwrap();

    // A second boot changes nothing.
    let out = ok(&config, &["accessory", "boot", "store"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("already running this definition; nothing changed"),
        "{}",
        text(&out)
    );
    assert_eq!(rt.block_on(store_container(&h2, &name)).unwrap(), first);

    // Details, as JSON.
    let out = ok(&config, &["--json", "accessory", "details", "store"]);
    let result: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap();
    let d = &result["accessories"][0];
    assert_eq!(d["current"]["state"], "running", "{d}");
    assert_eq!(d["current"]["health"], "healthy", "{d}");
    assert_eq!(d["data"][0]["owner"], "1000:1000", "{d}");
    assert_eq!(d["data"][0]["mode"], "0750", "{d}");
    assert!(!d.to_string().contains("tok-3141"), "{d}");

    // The app is deployed, rolled back and pruned beside it: the store is
    // neither replaced nor restarted.
    ok(&config, &["deploy", "--version", "v1"]);
    ok(&config, &["deploy", "--version", "v2"]);
    ok(&config, &["rollback", "v1"]);
    ok(&config, &["prune"]);
    assert_eq!(
        rt.block_on(store_container(&h2, &name)).unwrap(),
        first,
        "the app's commands touched the accessory"
    );
    intact("app deploys, rollback and prune");

    // `ballast logs` and `accessory logs` show its lines.
    let out = ok(&config, &["logs", "--tail", "5"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{h2_ip} store | booted v1")),
        "{}",
        text(&out)
    );
    let out = ok(&config, &["accessory", "logs", "store"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("store | booted v1"),
        "{}",
        text(&out)
    );

    // Reboot: a new container, same data.
    ok(&config, &["accessory", "reboot", "store"]);
    assert_ne!(rt.block_on(store_container(&h2, &name)).unwrap().0, first.0);
    intact("reboot");

    // Upgrade to v2: the old container is kept.
    let config = write_config(dir, &lab, "store:v2", None);
    let out = ok(&config, &["accessory", "upgrade", "store"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("starts only once the old one has stopped"),
        "{}",
        text(&out)
    );
    assert_eq!(
        rt.block_on(store_container(&h2, &name)).unwrap().2,
        "store:v2"
    );
    assert_eq!(
        rt.block_on(store_container(&h2, &previous)).unwrap().2,
        "store:v1"
    );
    rt.block_on(async { assert_eq!(served(&h2_ip).await.map(|r| r.0), Ok(200)) });
    intact("upgrade");

    // An upgrade to a version that never becomes healthy: refused once its
    // health_timeout has passed (failed checks within it count as starting,
    // as a database's first initialization may take that long), and v2
    // serves again.
    let config = write_config(dir, &lab, &format!("store:{NEVER_HEALTHY}"), None);
    let out = refused(
        &config,
        &["accessory", "upgrade", "store"],
        "the old container runs again",
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not healthy within 15s"),
        "{}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(6), "a timeout: {}", text(&out));
    assert_eq!(
        rt.block_on(store_container(&h2, &name)).unwrap().2,
        "store:v2"
    );
    rt.block_on(async { assert_eq!(served(&h2_ip).await, Ok((200, "keep me\n".to_string()))) });
    intact("a failed upgrade");

    // Rollback to the kept v1, and v2 is kept in turn.
    let config = write_config(dir, &lab, "store:v1", None);
    ok(&config, &["accessory", "rollback", "store"]);
    assert_eq!(
        rt.block_on(store_container(&h2, &name)).unwrap().2,
        "store:v1"
    );
    assert_eq!(
        rt.block_on(store_container(&h2, &previous)).unwrap().2,
        "store:v2"
    );
    intact("rollback");
    let boots = rt.block_on(sh(&h2, "cat", &[&format!("{DATA}/boots.log")]));
    assert!(
        boots.contains("booted v1")
            && boots.contains("booted v2")
            && boots.contains(&format!("booted {NEVER_HEALTHY}")),
        "{boots}"
    );

    // `ballast remove` takes the app away, never the accessory.
    let at_remove = rt.block_on(store_container(&h2, &name)).unwrap();
    ok(&config, &["remove", "--yes"]);
    assert_eq!(rt.block_on(store_container(&h2, &name)).unwrap(), at_remove);
    intact("ballast remove");

    // `accessory remove` without --destroy-data: containers go, data stays.
    let out = ok(&config, &["accessory", "remove", "store"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("data kept: {DATA}")),
        "{}",
        text(&out)
    );
    assert!(rt.block_on(store_container(&h2, &name)).is_none());
    assert!(rt.block_on(store_container(&h2, &previous)).is_none());
    intact("accessory remove");

    // Booted again: the data is there, served.
    ok(&config, &["accessory", "boot", "store"]);
    rt.block_on(async { assert_eq!(served(&h2_ip).await, Ok((200, "keep me\n".to_string()))) });

    // A backup (no dump command: an archive of /data, the store stopped
    // meanwhile and started again), checked by its own SHA-256 file.
    let backup = dir.join("store.backup.gz");
    let out = ok(
        &config,
        &[
            "accessory",
            "backup",
            "store",
            "--to",
            backup.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(archive, stopped meanwhile)"),
        "{}",
        text(&out)
    );
    let sums = std::fs::read_to_string(dir.join("store.backup.gz.sha256")).unwrap();
    let sha = Command::new("sha256sum").arg(&backup).output().unwrap();
    assert_eq!(
        sums.split_whitespace().next(),
        String::from_utf8_lossy(&sha.stdout)
            .split_whitespace()
            .next()
    );
    rt.block_on(async { assert_eq!(served(&h2_ip).await, Ok((200, "keep me\n".to_string()))) });
    let boots_at_backup = rt.block_on(sh(&h2, "cat", &[&format!("{DATA}/boots.log")]));
    refused(
        &config,
        &[
            "accessory",
            "backup",
            "store",
            "--to",
            backup.to_str().unwrap(),
        ],
        "already exists",
    );

    // Deleting the data: refused without a confirmation, changing nothing.
    refused(
        &config,
        &["accessory", "remove", "store", "--destroy-data"],
        "stdin is not a terminal; nothing was changed",
    );
    refused(
        &config,
        &[
            "accessory",
            "remove",
            "store",
            "--destroy-data",
            "--yes-destroy-data=stor",
        ],
        "`stor` is not `store`",
    );
    assert!(rt.block_on(store_container(&h2, &name)).is_some());
    intact("a refused --destroy-data");
    let out = ok(
        &config,
        &[
            "accessory",
            "remove",
            "store",
            "--destroy-data",
            "--yes-destroy-data=store",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("data DELETED: {DATA}")),
        "{}",
        text(&out)
    );
    let gone = rt
        .block_on(h2.run("test", &["-e", DATA], None, Duration::from_secs(10)))
        .unwrap();
    assert!(!gone.success(), "{DATA} is still there");
    let out = ok(&config, &["audit"]);
    let audit = String::from_utf8_lossy(&out.stdout);
    let who = ballast_core::state::whoami();
    let line = audit
        .lines()
        .find(|l| l.contains("data of accessory store deleted"))
        .unwrap_or_else(|| panic!("no audit record of the deletion:\n{audit}"));
    assert!(
        line.contains(&who) && line.contains(DATA) && line.contains(&h2_ip),
        "{line}"
    );

    // Restore: booted afresh, /data holds only the new boot line, so the
    // archive is refused until --replace-data; a cut or altered backup is
    // refused before the host is reached.
    ok(&config, &["accessory", "boot", "store"]);
    let fresh = rt.block_on(sh(&h2, "cat", &[&format!("{DATA}/boots.log")]));
    let from = backup.to_str().unwrap();
    refused(
        &config,
        &["accessory", "restore", "store", "--from", from],
        "is not empty; nothing was changed",
    );
    let bytes = std::fs::read(&backup).unwrap();
    let cut = dir.join("cut.gz");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    std::fs::copy(
        dir.join("store.backup.gz.sha256"),
        dir.join("cut.gz.sha256"),
    )
    .unwrap();
    let cut = cut.to_str().unwrap();
    refused(
        &config,
        &[
            "accessory",
            "restore",
            "store",
            "--from",
            cut,
            "--replace-data",
        ],
        "does not match its checksum",
    );
    assert_eq!(
        rt.block_on(sh(&h2, "cat", &[&format!("{DATA}/boots.log")])),
        fresh,
        "a refused restore changed the data"
    );
    let out = ok(
        &config,
        &[
            "accessory",
            "restore",
            "store",
            "--from",
            from,
            "--replace-data",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored"),
        "{}",
        text(&out)
    );
    rt.block_on(async { assert_eq!(served(&h2_ip).await, Ok((200, "keep me\n".to_string()))) });
    // The store booted once more on the restored data: what was there at the
    // backup, then one new line.
    let boots = rt.block_on(sh(&h2, "cat", &[&format!("{DATA}/boots.log")]));
    assert!(
        boots.starts_with(&boots_at_backup),
        "{boots}\nvs\n{boots_at_backup}"
    );
    let audit = String::from_utf8_lossy(&ok(&config, &["audit"]).stdout).into_owned();
    assert!(
        audit.contains("data of accessory store replaced") && audit.contains(&who),
        "{audit}"
    );

    rt.block_on(h2.close());
    eprintln!("accessory lab test: {:?}", started.elapsed());
}
