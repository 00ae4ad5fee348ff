//! Issue 11's "Must show" for a real PostgreSQL accessory, on a 3-host lab:
//! `db` (the image `ballast lab image postgres` builds offline) on host 3,
//! its data in a host directory, its port published on host 3's lab address
//! only, the password from `.ballast/secrets`; hello's `web` on hosts 1 and
//! 2 behind ballast-proxy, reaching `db` through the inventory variables,
//! with the password as a secret file. Rows written through `POST /db` are
//! counted and checksummed (independently of the database) after every
//! step: 20 deploy/rollback cycles of the app, an accessory reboot, an
//! upgrade and its rollback, `accessory remove` without `--destroy-data`, a
//! boot again and a restart of host 3's dockerd (the database serving
//! throughout: `ballast setup` turned live restore on). Then deleting the data is
//! refused without the typed name, a backup is taken, the data is deleted
//! and audited with who did it; on a fresh database a truncated or altered
//! backup is refused before anything changes, and the real one brings
//! every row back.
//!
//! The web role is proxied rather than publishing a port: that is how such
//! an app runs in production, every deploy and rollback then replaces the
//! container behind an unchanged address (a published port would stop the
//! old container first), and the rows go through the same path as users'
//! requests.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast_core::host::Host;
use ballast_core::release;
use ballast_lab::{Inventory, LabHost};

use common::postgres::{http_post, password, sha256_hex, summary};
use common::*;

const SERVICE: &str = "ledger";
/// The two app versions the cycles alternate.
const V1: &str = "data-v1";
const V2: &str = "data-v2";
/// Where `db` listens on host 3's lab address.
const DB_PORT: u16 = 15432;
/// The data directory's default place for `directories: [{container:
/// /var/lib/postgresql/data}]`.
const DATA: &str = "/var/lib/ballast/ledger/db/data";
const CONTAINER: &str = "ledger-db";
const PREVIOUS: &str = "ledger-db-previous";
/// How long `/db` may take to answer again after the database came back.
const BACK: Duration = Duration::from_secs(90);
/// The user the destroying command runs as, which the audit must name.
const OPERATOR: &str = "data-test-operator";

/// The config: `web` on hosts 1 and 2, `db` on host 3; `extra` is added to
/// the accessory's clear env (a changed definition, for `upgrade`). The
/// health check counts one failure as unhealthy, so a boot on an empty
/// directory passes only because failures while postgres initializes (for
/// seconds) do not count.
fn config_text(inv: &Inventory, pg_image: &str, extra: Option<(&str, &str)>) -> String {
    let (h1, h2, h3) = (&inv.hosts[0].ip, &inv.hosts[1].ip, &inv.hosts[2].ip);
    let (uid, gid) = (ballast_lab::postgres::UID, ballast_lab::postgres::GID);
    let clear = match extra {
        Some((k, v)) => format!("\n      clear: {{{k}: {v}}}"),
        None => String::new(),
    };
    format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
    secret_files: true
    stop_timeout: 2s
    healthcheck: {{path: /up, interval: 200ms, timeout: 2s}}
    proxy: {{drain_timeout: 1s}}
    env:
      clear:
        DATABASE_HOST: \"{{{{ accessories.db.host }}}}\"
        DATABASE_PORT: \"{{{{ accessories.db.port }}}}\"
      secret: [DATABASE_PASSWORD]
accessories:
  db:
    image: {pg_image}
    host: {h3}
    env:
      secret: [POSTGRES_PASSWORD]{clear}
    ports: [\"{h3}:{DB_PORT}:5432\"]
    directories:
      - {{container: /var/lib/postgresql/data, owner: \"{uid}:{gid}\", mode: \"0700\"}}
    healthcheck: {{cmd: [pg_isready, -U, postgres, -h, 127.0.0.1], interval: 300ms, timeout: 3s, retries: 1}}
    health_timeout: 90s
    stop_timeout: 20s
    backup:
      dump: [pg_dump, -U, postgres, --clean, --if-exists, -d, postgres]
      restore: [psql, -U, postgres, -v, ON_ERROR_STOP=1, -q, -d, postgres]
deploy:
  batch: 100%
  health_timeout: 20s
  retain: 3
"
    )
}

/// Writes `dir/NAME` (and the secrets beside it) for the lab.
fn write_config(
    dir: &Path,
    name: &str,
    lab: &Lab,
    pg_image: &str,
    secret: &str,
    extra: Option<(&str, &str)>,
) -> PathBuf {
    let inv = &lab.inventory;
    let rest = config_text(inv, pg_image, extra);
    std::fs::create_dir_all(dir.join(".ballast")).unwrap();
    std::fs::write(
        dir.join(".ballast/secrets"),
        format!("POSTGRES_PASSWORD={secret}\nDATABASE_PASSWORD={secret}\n"),
    )
    .unwrap();
    let written = lab_config(dir, inv, &inv.known_hosts, SERVICE, "hello", &rest);
    let path = dir.join(name);
    if written != path {
        std::fs::rename(&written, &path).unwrap();
    }
    path
}

/// `ballast --config CONFIG ARGS`, stdin closed, nothing asserted.
fn run(config: &Path, args: &[&str]) -> Output {
    ballast_cmd(config, &static_ballast(), args)
        .output()
        .unwrap()
}

/// Runs `args`, fails the test unless they succeed; returns stdout.
#[track_caller]
fn ok(config: &Path, args: &[&str]) -> String {
    let out = assert_ok(args, run(config, args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails unless `args` fail with `message` in stderr; returns the output.
#[track_caller]
fn refused(config: &Path, args: &[&str], message: &str) -> Output {
    assert_refused(args, run(config, args), message)
}

/// A command on a lab host over SSH; fails the test unless it succeeds.
async fn sh(h: &Host, program: &str, args: &[&str]) -> String {
    let out = h
        .run(program, args, None, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(out.success(), "{program} {args:?}: {}", out.stderr);
    out.stdout
}

/// Whether `test ARGS` holds on the host.
async fn holds(h: &Host, args: &[&str]) -> bool {
    h.run("test", args, None, Duration::from_secs(30))
        .await
        .unwrap()
        .success()
}

/// `docker inspect -f FORMAT NAME` on the host, or None when there is no
/// such container.
async fn inspect(h: &Host, name: &str, format: &str) -> Option<String> {
    let out = h
        .run(
            "docker",
            &["inspect", "--type", "container", "-f", format, name],
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    if out.success() {
        return Some(out.stdout.trim().to_string());
    }
    assert!(out.stderr.contains("No such"), "{}", out.stderr);
    None
}

/// The running `db` container: (id, started at).
async fn db_container(h3: &Host) -> (String, String) {
    let line = inspect(
        h3,
        CONTAINER,
        "{{.Id}} {{.State.Running}} {{.State.StartedAt}}",
    )
    .await
    .unwrap_or_else(|| panic!("{CONTAINER} is not on host 3"));
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts[1], "true", "{CONTAINER} is not running: {line}");
    (parts[0].to_string(), parts[2].to_string())
}

/// The data directory as host 3 has it: owner, mode, and whether a
/// database is in it.
async fn data_dir(h3: &Host) -> (String, bool) {
    let stat = sh(h3, "stat", &["-c", "%u:%g %a", DATA]).await;
    let pg_version = holds(h3, &["-s", &format!("{DATA}/PG_VERSION")]).await;
    (stat.trim().to_string(), pg_version)
}

/// The running web container of each of hosts 1 and 2: (id, version).
async fn web_containers(hosts: &[Host]) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for h in hosts {
        let running: Vec<_> = release::observe(h.engine(), SERVICE)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.running && c.role == "web")
            .collect();
        assert_eq!(running.len(), 1, "{running:?}");
        seen.push((running[0].id.clone(), running[0].version.clone()));
    }
    seen
}

/// The rows written through hello, as hello answered: (id, payload).
struct Ledger {
    /// `http://HOST:80` of each web host, through its proxy.
    bases: Vec<String>,
    rows: Vec<(i64, String)>,
}

impl Ledger {
    /// Writes `n` rows for `step`, alternating the web hosts.
    async fn write(&mut self, step: &str, n: usize) {
        for i in 0..n {
            let base = &self.bases[(self.rows.len() + i) % self.bases.len()];
            let payload = format!("{step} · row {} via {base}", self.rows.len() + 1);
            let (status, body) = http_post(&format!("{base}/db"), &payload).await.unwrap();
            assert_eq!(status, 200, "POST /db after {step}: {body}");
            let id = body
                .trim()
                .strip_prefix("id=")
                .and_then(|id| id.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("POST /db answered {body:?}"));
            assert!(
                self.rows.iter().all(|(old, _)| *old < id),
                "id {id} after {step} is not past every earlier one"
            );
            self.rows.push((id, payload));
        }
    }

    /// Requires `/db` of every web host to answer, at once, exactly the
    /// rows written: their count and checksum.
    async fn check(&self, after: &str) {
        let want = summary(&self.rows);
        for base in &self.bases {
            let got = http_get(&format!("{base}/db")).await.unwrap();
            assert_eq!(got, (200, want.clone()), "{base}/db after {after}");
        }
    }

    /// After a step: every row written before it is there, then a few more
    /// rows are written and read back from both hosts.
    async fn survived(&mut self, step: &str) {
        self.check(step).await;
        self.write(step, 4).await;
        self.check(&format!("{step} (+4 rows)")).await;
    }
}

/// Waits until `GET base/db` answers 200, within [`BACK`].
async fn wait_db(base: &str, after: &str) {
    let until = Instant::now() + BACK;
    loop {
        match http_get(&format!("{base}/db")).await {
            Ok((200, _)) => return,
            other if Instant::now() >= until => {
                panic!("{base}/db after {after}: no 200 within {BACK:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Requires `/db` to answer 503 (the database is gone) while the app
/// itself serves.
async fn db_unavailable(bases: &[String], secret: &str) {
    for base in bases {
        let (status, body) = http_get(&format!("{base}/db")).await.unwrap();
        assert_eq!(status, 503, "{base}/db: {body}");
        assert!(body.starts_with("database unavailable: "), "{body}");
        assert!(!body.contains(secret));
        let (status, _) = http_get(&format!("{base}/up")).await.unwrap();
        assert_eq!(status, 200);
    }
}

/// `docker ARGS` on this machine (the lab hosts are its containers).
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Stops the dockerd of lab host `h` with SIGTERM, as a service manager
/// would (dockerd stops its containers, each with its stop signal and
/// timeout), and waits until it has exited.
fn stop_dockerd(h: &LabHost) {
    let pid = docker(&["exec", &h.container, "cat", "/var/run/docker.pid"]);
    assert!(pid.status.success(), "{}", text(&pid));
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    let out = docker(&["exec", &h.container, "kill", "-TERM", &pid]);
    assert!(out.status.success(), "{}", text(&out));
    let until = Instant::now() + Duration::from_secs(60);
    while docker(&["exec", &h.container, "pgrep", "-x", "dockerd"])
        .status
        .success()
    {
        assert!(Instant::now() < until, "dockerd did not stop within 60s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts dockerd on lab host `h` again, as its init script does.
fn start_dockerd(h: &LabHost) {
    let out = docker(&[
        "exec",
        "-d",
        &h.container,
        "sh",
        "-c",
        "exec dockerd >>/var/log/dockerd.log 2>&1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The `--json audit` records.
fn audit_records(config: &Path) -> Vec<serde_json::Value> {
    let out = ok(config, &["--json", "audit"]);
    let result = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result in:\n{out}"));
    result["records"].as_array().unwrap().clone()
}

/// The name `ballast` records as who ran a command with `USER=OPERATOR`.
fn operator() -> String {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    format!("{OPERATOR}@{}", machine.trim())
}

#[test]
fn postgres_rows_survive_everything_but_a_confirmed_destroy_and_come_back_from_a_backup() {
    require_engine!();
    let started = Instant::now();
    let mut phase = Instant::now();
    let mut lap = |what: &str| {
        eprintln!("measure: {what}: {:.1}s", phase.elapsed().as_secs_f64());
        phase = Instant::now();
    };
    let pg_image = common::postgres::image();
    hello_image(V1);
    hello_image(V2);
    lap("images");
    let lab = Lab::up("data", 3);
    lap("lab up");
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let secret = password();
    let upgraded = write_config(
        dir,
        "upgraded.yml",
        &lab,
        &pg_image,
        &secret,
        Some(("LEDGER_DEFINITION", "upgraded")),
    );
    let config = write_config(dir, "ballast.yml", &lab, &pg_image, &secret, None);
    let h3_ip = inv.hosts[2].ip.clone();
    let rt = runtime();
    let connect = |n: usize| {
        rt.block_on(Host::connect(
            &inv.hosts[n].ip,
            &inv.ssh_target(&inv.hosts[n]),
        ))
        .unwrap()
    };
    let web_hosts = [connect(0), connect(1)];
    let mut h3 = connect(2);
    let mut ledger = Ledger {
        bases: inv.hosts[..2]
            .iter()
            .map(|h| format!("http://{}:80", h.ip))
            .collect(),
        rows: Vec::new(),
    };

    // The plan shows the inventory variables resolved, never the password.
    let plan = ok(&config, &["--json", "plan", "--version", V1]);
    assert!(!plan.contains(&secret), "{plan}");
    let plan = plan
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result in:\n{plan}"));
    let hosts = plan["batches"][0]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{plan}");
    for h in hosts {
        assert_eq!(
            h["spec"]["env_clear"],
            serde_json::json!({"DATABASE_HOST": h3_ip, "DATABASE_PORT": DB_PORT.to_string()}),
            "{h}"
        );
        assert_eq!(
            h["spec"]["env_secret"],
            serde_json::json!(["DATABASE_PASSWORD"])
        );
    }

    // Boot: the data directory made with its owner and mode, the port on
    // host 3's lab address only, healthy by pg_isready.
    let out = ok(&config, &["accessory", "boot", "db"]);
    assert!(out.contains("db: booted"), "{out}");
    lap("accessory boot");
    rt.block_on(async {
        assert_eq!(data_dir(&h3).await, ("100:102 700".to_string(), true));
        let bindings = inspect(&h3, CONTAINER, "{{json .HostConfig.PortBindings}}")
            .await
            .unwrap();
        let bindings: serde_json::Value = serde_json::from_str(&bindings).unwrap();
        assert_eq!(
            bindings,
            serde_json::json!({"5432/tcp": [{"HostIp": h3_ip, "HostPort": DB_PORT.to_string()}]})
        );
        let health = inspect(
            &h3,
            CONTAINER,
            "{{.State.Health.Status}} {{.HostConfig.RestartPolicy.Name}}",
        )
        .await
        .unwrap();
        assert_eq!(health, "healthy always");
        let listening = sh(&h3, "ss", &["-Hltn", &format!("sport = :{DB_PORT}")]).await;
        let locals: Vec<&str> = listening
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        assert_eq!(locals, [format!("{h3_ip}:{DB_PORT}")], "{listening}");
    });

    // The app, v1, with the password in a file, not in its environment.
    ok(&config, &["setup"]);
    ok(&config, &["deploy", "--version", V1]);
    lap("setup and deploy v1");
    rt.block_on(async {
        for h in &web_hosts {
            let running = web_containers(std::slice::from_ref(h)).await;
            let env = sh(
                h,
                "docker",
                &["inspect", "-f", "{{json .Config.Env}}", &running[0].0],
            )
            .await;
            let env: Vec<String> = serde_json::from_str(&env).unwrap();
            for want in [
                format!("DATABASE_HOST={h3_ip}"),
                format!("DATABASE_PORT={DB_PORT}"),
                "DATABASE_PASSWORD_FILE=/run/secrets/DATABASE_PASSWORD".to_string(),
            ] {
                assert!(env.contains(&want), "{want} not in {env:?}");
            }
            assert!(!env.iter().any(|e| e.contains(&secret)), "{env:?}");
        }
        // An empty table first (hello makes it), then rows from both hosts.
        ledger.check("deploy v1").await;
        ledger.write("deploy v1", 10).await;
        ledger.check("10 rows").await;
    });

    // 20 deploy/rollback cycles: each replaces the running container of
    // both hosts; none touches the accessory.
    let db_before_cycles = rt.block_on(db_container(&h3));
    for cycle in 1..=20 {
        for (args, version) in [
            (vec!["deploy", "--version", V2], V2),
            (vec!["rollback", V1], V1),
        ] {
            let before = rt.block_on(web_containers(&web_hosts));
            ok(&config, &args);
            rt.block_on(async {
                let after = web_containers(&web_hosts).await;
                for (b, a) in before.iter().zip(&after) {
                    assert_ne!(a.0, b.0, "cycle {cycle}: {args:?} replaced no container");
                    assert_eq!(a.1, version, "cycle {cycle}: {args:?}");
                }
                for base in &ledger.bases {
                    let (status, body) = http_get(&format!("{base}/")).await.unwrap();
                    assert_eq!((status, body.trim()), (200, version));
                }
                ledger.survived(&format!("cycle {cycle} {}", args[0])).await;
            });
        }
    }
    assert_eq!(
        rt.block_on(db_container(&h3)),
        db_before_cycles,
        "an app deploy or rollback touched the accessory"
    );
    lap("20 deploy/rollback cycles");

    // Reboot: a new container on the same data.
    ok(&config, &["accessory", "reboot", "db"]);
    let rebooted = rt.block_on(db_container(&h3));
    assert_ne!(rebooted.0, db_before_cycles.0);
    rt.block_on(ledger.survived("accessory reboot"));
    lap("accessory reboot");

    // Upgrade to a changed definition, then rollback to the kept one.
    let definition = |config: &Path| {
        run(
            config,
            &[
                "accessory",
                "exec",
                "db",
                "--",
                "printenv",
                "LEDGER_DEFINITION",
            ],
        )
    };
    ok(&upgraded, &["accessory", "upgrade", "db"]);
    let after_upgrade = rt.block_on(db_container(&h3));
    assert_ne!(after_upgrade.0, rebooted.0);
    assert_eq!(
        rt.block_on(inspect(&h3, PREVIOUS, "{{.Id}} {{.State.Running}}")),
        Some(format!("{} false", rebooted.0))
    );
    let out = assert_ok(&["printenv"], definition(&upgraded));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "upgraded\n");
    rt.block_on(ledger.survived("accessory upgrade"));
    ok(&config, &["accessory", "rollback", "db"]);
    assert_eq!(rt.block_on(db_container(&h3)).0, rebooted.0);
    assert_eq!(
        rt.block_on(inspect(&h3, PREVIOUS, "{{.Id}} {{.State.Running}}")),
        Some(format!("{} false", after_upgrade.0))
    );
    let out = definition(&config);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    rt.block_on(ledger.survived("accessory rollback"));
    lap("accessory upgrade and rollback");

    // Remove without --destroy-data: the containers go, the data stays.
    let out = ok(&config, &["accessory", "remove", "db"]);
    assert!(out.contains(&format!("data kept: {DATA}")), "{out}");
    rt.block_on(async {
        assert_eq!(inspect(&h3, CONTAINER, "{{.Id}}").await, None);
        assert_eq!(inspect(&h3, PREVIOUS, "{{.Id}}").await, None);
        assert_eq!(data_dir(&h3).await, ("100:102 700".to_string(), true));
        db_unavailable(&ledger.bases, &secret).await;
    });
    ok(&config, &["accessory", "boot", "db"]);
    rt.block_on(ledger.survived("accessory remove and boot"));
    lap("accessory remove and boot");

    // host 3's dockerd restarts. `ballast setup` turned live restore on
    // there, so the database keeps serving while dockerd is down, and the
    // same container, never restarted, is there when it is back.
    let settings = docker(&[
        "exec",
        &inv.hosts[2].container,
        "cat",
        "/etc/docker/daemon.json",
    ]);
    assert!(
        String::from_utf8_lossy(&settings.stdout).contains("\"live-restore\": true"),
        "{}",
        text(&settings)
    );
    let before_restart = rt.block_on(db_container(&h3));
    stop_dockerd(&inv.hosts[2]);
    rt.block_on(ledger.survived("host 3's dockerd stopped (live restore)"));
    start_dockerd(&inv.hosts[2]);
    rt.block_on(h3.close());
    h3 = connect(2);
    rt.block_on(async {
        let until = Instant::now() + BACK;
        loop {
            let state = h3
                .run(
                    "docker",
                    &[
                        "inspect",
                        "-f",
                        "{{.Id}} {{.State.Running}} {{.State.StartedAt}}",
                        CONTAINER,
                    ],
                    None,
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            let line = state.stdout.trim().to_string();
            if line.starts_with(&format!("{} true ", before_restart.0)) {
                assert!(
                    line.ends_with(&before_restart.1),
                    "{CONTAINER} was restarted although live restore is on: {line}"
                );
                break;
            }
            assert!(
                Instant::now() < until,
                "{CONTAINER} did not come back after dockerd restarted: {line} {}",
                state.stderr
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for base in &ledger.bases {
            wait_db(base, "a restart of host 3's dockerd").await;
        }
        ledger.survived("a restart of host 3's dockerd").await;
    });
    let after_restart = rt.block_on(db_container(&h3));
    lap("dockerd restart");

    // Deleting the data: refused without the name, then with a wrong one.
    let destroy = ["accessory", "remove", "db", "--destroy-data"];
    for (args, message) in [
        (
            destroy.to_vec(),
            "stdin is not a terminal; nothing was changed",
        ),
        (
            [&destroy[..], &["--yes-destroy-data=wrongname"]].concat(),
            "`wrongname` is not `db`; nothing was changed",
        ),
    ] {
        let out = refused(&config, &args, message);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
    assert_eq!(rt.block_on(db_container(&h3)), after_restart);
    rt.block_on(async {
        assert_eq!(data_dir(&h3).await, ("100:102 700".to_string(), true));
        ledger.survived("refused --destroy-data").await;
    });
    lap("refused destroys");

    // A backup first, with its checksum beside it.
    let backup = dir.join("backups/db.sql.gz");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    ok(
        &config,
        &[
            "accessory",
            "backup",
            "db",
            "--to",
            backup.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&backup).unwrap();
    let sum_file = PathBuf::from(format!("{}.sha256", backup.display()));
    let sum = std::fs::read_to_string(&sum_file).unwrap();
    assert_eq!(
        sum.split_whitespace().next(),
        Some(sha256_hex(&bytes).as_str()),
        "{sum}"
    );
    // It is gzip'd SQL holding the rows (and not the password).
    let gunzip = Command::new("gzip")
        .args(["-dc", backup.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(gunzip.status.success(), "{}", text(&gunzip));
    let sql = String::from_utf8_lossy(&gunzip.stdout);
    assert!(sql.contains("COPY public.hello_rows"), "{sql}");
    assert!(sql.contains(&ledger.rows[0].1), "{sql}");
    assert!(!sql.contains(&secret));
    let before_destroy = rt.block_on(http_get(&format!("{}/db", ledger.bases[0])));
    assert_eq!(before_destroy, Ok((200, summary(&ledger.rows))));
    lap("backup");

    // Destroyed, confirmed: the directory is gone, the audit says who.
    let confirmed = [&destroy[..], &["--yes-destroy-data=db"]].concat();
    let out = ballast_cmd(&config, &static_ballast(), &confirmed)
        .env("USER", OPERATOR)
        .env("LOGNAME", OPERATOR)
        .output()
        .unwrap();
    let out = assert_ok(&confirmed, out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("data DELETED: {DATA}")), "{said}");
    rt.block_on(async {
        assert!(!holds(&h3, &["-e", DATA]).await, "{DATA} is still there");
        assert_eq!(inspect(&h3, CONTAINER, "{{.Id}}").await, None);
        db_unavailable(&ledger.bases, &secret).await;
    });
    let records = audit_records(&config);
    let deleted: Vec<_> = records
        .iter()
        .filter(|r| {
            r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("data of accessory db deleted"))
        })
        .collect();
    assert_eq!(deleted.len(), 1, "{records:#?}");
    let record = deleted[0];
    assert_eq!(record["who"], operator().as_str(), "{record}");
    assert_eq!(
        record["outcome"],
        format!("data of accessory db deleted: {DATA}").as_str()
    );
    assert_eq!(record["hosts"], serde_json::json!([h3_ip]));
    assert_eq!(record["command"], "accessory remove db --destroy-data");
    lap("destroy");

    // A fresh, empty database.
    ok(&config, &["accessory", "boot", "db"]);
    let tables = || {
        let args = [
            "accessory",
            "exec",
            "db",
            "--",
            "psql",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'hello_rows'",
        ];
        ok(&config, &args).trim().to_string()
    };
    assert_eq!(tables(), "0", "the fresh database has hello's table");
    let fresh = rt.block_on(async {
        assert_eq!(data_dir(&h3).await, ("100:102 700".to_string(), true));
        db_container(&h3).await
    });

    // A truncated and an altered backup, each with the checksum file of
    // the real one, then each with a checksum of its own (only the gzip
    // stream tells): refused before anything changed.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut altered = bytes.clone();
    altered[bytes.len() / 2] ^= 0x01;
    let truncated = bytes[..bytes.len() / 2].to_vec();
    let mismatch = "does not match its checksum";
    let not_gzip = "is not a complete gzip stream";
    for (name, content, own_sum, message) in [
        ("truncated.sql.gz", &truncated, false, mismatch),
        ("altered.sql.gz", &altered, false, mismatch),
        ("truncated-summed.sql.gz", &truncated, true, not_gzip),
        ("altered-summed.sql.gz", &altered, true, not_gzip),
    ] {
        let path = bad.join(name);
        std::fs::write(&path, content).unwrap();
        let sum = if own_sum {
            format!("{}  {name}\n", sha256_hex(content))
        } else {
            sum.clone()
        };
        std::fs::write(format!("{}.sha256", path.display()), sum).unwrap();
        let args = [
            "accessory",
            "restore",
            "db",
            "--from",
            path.to_str().unwrap(),
        ];
        let out = refused(&config, &args, message);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nothing was changed on the host"),
            "{}",
            text(&out)
        );
        eprintln!("{name} refused (exit {:?}):\n{err}", out.status.code());
        assert_eq!(tables(), "0", "{name}: the database changed");
        assert_eq!(rt.block_on(db_container(&h3)), fresh, "{name}");
    }
    rt.block_on(async {
        for base in &ledger.bases {
            let got = http_get(&format!("{base}/db")).await.unwrap();
            assert_eq!(got, (200, summary(&[])), "{base}");
        }
    });
    lap("refused restores");

    // The real backup: every row back, then the ledger goes on.
    ok(
        &config,
        &[
            "accessory",
            "restore",
            "db",
            "--from",
            backup.to_str().unwrap(),
        ],
    );
    rt.block_on(async {
        for base in &ledger.bases {
            let got = http_get(&format!("{base}/db")).await;
            assert_eq!(got, before_destroy, "{base}/db after restore");
        }
        ledger.survived("restore").await;
    });
    // The restore is audited; the refused ones changed nothing to record.
    let restores: Vec<_> = audit_records(&config)
        .into_iter()
        .filter(|r| {
            r["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("accessory restore"))
        })
        .collect();
    assert_eq!(restores.len(), 1, "{restores:#?}");
    assert_eq!(
        restores[0]["command"],
        format!("accessory restore db --from {}", backup.display()).as_str()
    );
    assert_eq!(restores[0]["hosts"], serde_json::json!([h3_ip]));
    lap("restore");

    for h in web_hosts {
        rt.block_on(h.close());
    }
    rt.block_on(h3.close());
    eprintln!(
        "data lab test: {} rows, {:.1}s",
        ledger.rows.len(),
        started.elapsed().as_secs_f64()
    );
}
