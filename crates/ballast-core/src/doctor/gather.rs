//! Gathering facts from every host of a fleet, in parallel, over the
//! connections the fleet already has: a few small commands (arguments as
//! data; the files it reads whole in one) and `docker info` through the
//! engine. A host whose SSH works but whose engine does not is still
//! looked at, over SSH alone, when doctor knows how to reach it; a host
//! SSH cannot reach is reported as such.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::ListImagesOptionsBuilder;
use futures_util::{stream, StreamExt};

use super::facts::{Clock, Facts, ImageFacts, RootFacts};
use super::files;
use super::knowledge::DAEMON_LOGS;
use super::parse;
use super::shell::{self, Shell};
use crate::engine::Engine;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::host::Reach;

/// The step `Engine::unix` names when the engine behind a working SSH
/// connection does not answer.
use crate::engine::CONNECT_STEP as ENGINE_STEP;
/// Deadline of one engine call made for facts.
const ENGINE_DEADLINE: Duration = Duration::from_secs(10);
/// Deadline for all the facts of one host; a host slower than this is
/// reported as not checked rather than holding up the others.
const HOST_DEADLINE: Duration = Duration::from_secs(45);
/// Where the engine keeps its data unless told otherwise.
const DEFAULT_ROOT: &str = "/var/lib/docker";

/// The files doctor reads whole, all in one command (see `files`).
const KERNEL_RELEASE: &str = "/proc/sys/kernel/osrelease";
const OS_RELEASE: &str = "/etc/os-release";
const OS_RELEASE_USR: &str = "/usr/lib/os-release";
const REDHAT_RELEASE: &str = "/etc/redhat-release";
const INIT_NAME: &str = "/proc/1/comm";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// `head`'s own mount table, which is the host's (it runs as the SSH
/// session's command, in the host's mount namespace).
const MOUNTINFO: &str = "/proc/self/mountinfo";
const FILES: [&str; 7] = [
    KERNEL_RELEASE,
    OS_RELEASE,
    OS_RELEASE_USR,
    REDHAT_RELEASE,
    INIT_NAME,
    DAEMON_JSON,
    MOUNTINFO,
];

/// What to gather besides the host itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gather<'a> {
    /// The service's image: its declared volumes and health check feed
    /// config rules.
    pub image: Option<&'a str>,
    /// How to reach hosts over SSH alone, for those whose engine is down.
    pub reach: Option<&'a Reach>,
    /// How many hosts at once.
    pub concurrency: usize,
}

/// Facts of every host of the fleet, in the fleet's order.
pub async fn gather(fleet: &Fleet, how: Gather<'_>) -> Vec<Facts> {
    let failed: HashMap<&str, &Error> = fleet
        .unreachable
        .iter()
        .filter_map(|e| Some((e.host.as_deref()?, e)))
        .collect();
    let mut out: Vec<(usize, Facts)> = stream::iter(fleet.order.iter().enumerate())
        .map(|(i, name)| {
            let failed = failed.get(name.as_str()).copied();
            async move {
                let facts = match (fleet.get(name), failed) {
                    (Some(host), _) => {
                        let shell = Shell::Host(host);
                        let work = host_facts(name, &shell, Some(host.engine()), how.image);
                        within_deadline(name, work).await
                    }
                    (None, Some(e)) if e.step == ENGINE_STEP => {
                        within_deadline(name, engine_down(name, e, how.reach)).await
                    }
                    (None, Some(e)) => Facts {
                        unreachable: Some(format!("{}: {}", e.step, e.cause)),
                        ..Facts::new(name)
                    },
                    (None, None) => Facts {
                        unreachable: Some("not connected".into()),
                        ..Facts::new(name)
                    },
                };
                (i, facts)
            }
        })
        .buffer_unordered(how.concurrency.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, f)| f).collect()
}

/// The facts `work` gathers, or a host reported as not checked when it
/// takes longer than [`HOST_DEADLINE`].
async fn within_deadline(name: &str, work: impl std::future::Future<Output = Facts>) -> Facts {
    match tokio::time::timeout(HOST_DEADLINE, work).await {
        Ok(facts) => facts,
        Err(_) => Facts {
            unreachable: Some(format!(
                "gather facts: not done within {}",
                crate::error::humanize(HOST_DEADLINE)
            )),
            ..Facts::new(name)
        },
    }
}

/// A host whose SSH works but whose engine does not answer: what SSH alone
/// can tell, with the daemon's own log.
async fn engine_down(name: &str, e: &Error, reach: Option<&Reach>) -> Facts {
    let why = e.cause.clone();
    let mut facts = match reach {
        None => Facts {
            gaps: vec!["host: only the engine's error is known (no SSH settings given)".into()],
            ..Facts::new(name)
        },
        Some(reach) => match shell::ssh_only(name, reach).await {
            Ok(shell) => {
                let f = host_facts(name, &shell, None, None).await;
                shell.close().await;
                f
            }
            Err(ssh) => Facts {
                gaps: vec![format!("host: SSH without the engine failed: {ssh}")],
                ..Facts::new(name)
            },
        },
    };
    facts.engine_error = Some(why);
    facts
}

/// Everything about one host reachable through `shell`; `engine` is `None`
/// when it does not answer.
async fn host_facts(
    name: &str,
    shell: &Shell<'_>,
    engine: Option<&Engine>,
    image: Option<&str>,
) -> Facts {
    let mut f = Facts::new(name);
    // The clock first, alone, so other commands do not stretch its round trip.
    let measured = clock(shell).await;
    f.clock = f.keep("clock", measured);
    let info = async {
        match engine {
            Some(engine) => Some(engine_info(engine).await),
            None => None,
        }
    };
    let (read, daemon_args, info) = tokio::join!(
        files::read(shell, &FILES),
        shell.output("ps", &["-o", "args=", "-C", "dockerd"]),
        info,
    );
    let file = |path: &str| -> Result<String, String> {
        match &read {
            Ok(files) => files.get(path).map(str::to_string),
            Err(e) => Err(e.clone()),
        }
    };
    f.kernel = f.keep("kernel", file(KERNEL_RELEASE).map(|k| k.trim().to_string()));
    f.os = f.keep("os", os_release(&file));
    f.init = f.keep("init", file(INIT_NAME).map(|s| s.trim().to_string()));
    match file(DAEMON_JSON) {
        Ok(text) => match parse::daemon_json(&text) {
            Ok(d) => f.daemon_json = Some(d),
            Err(e) => f.daemon_json_error = Some(e),
        },
        Err(e) if e.contains("No such file") => {}
        Err(e) => f.gaps.push(format!("daemon_json: {e}")),
    }
    let mountinfo = file(MOUNTINFO);
    // `ps -C` exits 1, saying nothing, when no process matches.
    match daemon_args.map(|a| a.trim().to_string()) {
        Ok(args) if !args.is_empty() => {
            (f.daemon_args, f.daemon_running) = (Some(args), Some(true))
        }
        Ok(_) => f.daemon_running = Some(false),
        Err(e) if e.starts_with("ps exited with") => f.daemon_running = Some(false),
        Err(e) => f.gaps.push(format!("daemon_args: {e}")),
    }
    match info {
        Some(Ok(info)) => f.engine = Some(info),
        Some(Err(e)) => f.engine_error = Some(e),
        None => {}
    }
    let root_dir = f
        .engine
        .as_ref()
        .and_then(|e| e.root_dir.clone())
        .or_else(|| f.daemon_json.as_ref().and_then(|d| d.data_root.clone()))
        .unwrap_or_else(|| DEFAULT_ROOT.to_string());
    let release = f.kernel.clone();
    let log = async {
        match f.engine {
            Some(_) => None,
            None => daemon_log(shell).await,
        }
    };
    let df_bytes = ["-P", "-B1", root_dir.as_str()];
    let df_inodes = ["-P", "-i", root_dir.as_str()];
    let (bytes, inodes, kconfig, log, image) = tokio::join!(
        shell.output("df", &df_bytes),
        shell.output("df", &df_inodes),
        kernel_config(shell, release.as_deref()),
        log,
        image_facts(engine, image),
    );
    let mut root = RootFacts {
        dir: root_dir.clone(),
        ..Default::default()
    };
    match bytes.map(|t| parse::df(&t)) {
        Ok(Some((total, free))) => (root.bytes_total, root.bytes_free) = (Some(total), Some(free)),
        Ok(None) => f.gaps.push("root: df printed nothing readable".into()),
        Err(e) => f.gaps.push(format!("root: {e}")),
    }
    if let Ok(Some((total, free))) = inodes.map(|t| parse::df(&t)) {
        (root.inodes_total, root.inodes_free) = (Some(total), Some(free));
    }
    match mountinfo {
        Ok(text) => root.mount = parse::mount_of(&text, &root_dir),
        Err(e) => f.gaps.push(format!("root.mount: {e}")),
    }
    f.root = Some(root);
    f.kernel_config = f.keep("kernel_config", kconfig);
    f.daemon_log = log;
    f.image = f.keep("image", image).flatten();
    f
}

impl Facts {
    /// Keeps a gathered value, or notes why it is missing.
    fn keep<T>(&mut self, what: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.gaps.push(format!("{what}: {e}"))).ok()
    }
}

/// Host time against this machine's, from one `date` round trip.
async fn clock(shell: &Shell<'_>) -> Result<Clock, String> {
    let before = now();
    let out = shell.output("date", &["-u", "+%s.%N"]).await?;
    let after = now();
    let remote = parse::epoch_seconds(&out).ok_or_else(|| format!("unreadable date {out:?}"))?;
    let middle = (before + after) / 2.0;
    Ok(Clock {
        offset_ms: ((remote - middle) * 1000.0).round() as i64,
        uncertainty_ms: ((after - before) * 500.0).ceil() as i64,
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// os-release where it exists, else redhat-release (RHEL/CentOS 6), from
/// the files read.
fn os_release(file: &dyn Fn(&str) -> Result<String, String>) -> Result<super::facts::Os, String> {
    for path in [OS_RELEASE, OS_RELEASE_USR] {
        if let Some(os) = file(path).ok().and_then(|t| parse::os_release(&t)) {
            return Ok(os);
        }
    }
    let text = file(REDHAT_RELEASE)?;
    parse::redhat_release(&text).ok_or_else(|| "no os-release and an unknown redhat-release".into())
}

/// Kernel build options from /boot, else /proc/config.gz.
async fn kernel_config(
    shell: &Shell<'_>,
    release: Option<&str>,
) -> Result<super::facts::KernelConfig, String> {
    let mut why = Vec::new();
    if let Some(release) = release {
        let path = format!("/boot/config-{release}");
        match shell.output("cat", &[&path]).await {
            Ok(text) => return Ok(parse::kernel_config(&text, &path)),
            Err(e) => why.push(e),
        }
    }
    match shell.output("gzip", &["-dc", "/proc/config.gz"]).await {
        Ok(text) => Ok(parse::kernel_config(&text, "/proc/config.gz")),
        Err(e) => {
            why.push(e);
            Err(format!("not readable ({})", why.join("; ")))
        }
    }
}

/// The tail of dockerd's own log, from the first place that has one.
async fn daemon_log(shell: &Shell<'_>) -> Option<String> {
    for (program, args) in DAEMON_LOGS {
        if let Ok(text) = shell.output(program, args).await {
            let text = text.trim();
            if !text.is_empty() && !text.starts_with("-- No entries --") {
                return Some(text.to_string());
            }
        }
    }
    None
}

async fn engine_info(engine: &Engine) -> Result<super::facts::EngineInfo, String> {
    let call = engine.call("read docker info", engine.docker().info());
    match tokio::time::timeout(ENGINE_DEADLINE, call).await {
        Err(_) => Err(format!(
            "docker info: no answer within {}",
            crate::error::humanize(ENGINE_DEADLINE)
        )),
        Ok(Err(e)) => Err(format!("{}: {}", e.step, e.cause)),
        Ok(Ok(info)) => Ok(parse::engine_info(info)),
    }
}

/// The newest image of the host that matches `reference` (a repository
/// matches all its tags), with what it declares.
async fn image_facts(
    engine: Option<&Engine>,
    reference: Option<&str>,
) -> Result<Option<ImageFacts>, String> {
    let (Some(engine), Some(reference)) = (engine, reference) else {
        return Ok(None);
    };
    let work = async {
        let filters = HashMap::from([("reference", vec![reference])]);
        let options = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut found = engine
            .call("list images", engine.docker().list_images(Some(options)))
            .await?;
        found.sort_by_key(|i| std::cmp::Reverse(i.created));
        let Some(newest) = found.into_iter().next() else {
            return Ok(None);
        };
        let inspected = engine
            .call("inspect image", engine.docker().inspect_image(&newest.id))
            .await?;
        let config = inspected.config.unwrap_or_default();
        let healthcheck = config
            .healthcheck
            .and_then(|h| h.test)
            .is_some_and(|t| !t.is_empty() && t[0] != "NONE");
        Ok::<_, Error>(Some(ImageFacts {
            reference: newest
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| reference.to_string()),
            id: newest.id,
            volumes: config.volumes.unwrap_or_default(),
            healthcheck,
        }))
    };
    match tokio::time::timeout(ENGINE_DEADLINE, work).await {
        Err(_) => Err("no answer in time".into()),
        Ok(r) => r.map_err(|e| e.cause),
    }
}
