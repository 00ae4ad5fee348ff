//! Hooks: executables in `.ballast/hooks/` beside the config, run on the
//! operator's machine around a deploy (`pre-connect`, `pre-build`,
//! `pre-deploy`, `post-deploy`, `post-rollback`), with what they need to
//! know in `BALLAST_*` variables and a deadline. A `pre-*` hook that fails,
//! hangs past its deadline or cannot run stops the command before any host
//! changes; a `post-*` hook's failure is reported, the outcome stands.
//!
//! Variables: `BALLAST_SERVICE`, `BALLAST_COMMAND`, `BALLAST_VERSION`,
//! `BALLAST_HOSTS` (comma-separated), `BALLAST_ROLES`, `BALLAST_PERFORMER`
//! (`user@machine`), `BALLAST_DESTINATION` (empty without `-d`),
//! `BALLAST_HOOK`, and for `post-*` hooks `BALLAST_OUTCOME` (`ok`,
//! `failed` or `interrupted`). No secret is ever passed to a hook.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::error::{Error, ErrorKind, Result};

/// How long a hook may run unless the config says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The hooks ballast runs, in the order a deploy meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreConnect,
    PreBuild,
    PreDeploy,
    PostDeploy,
    PostRollback,
}

impl Hook {
    /// The file name in `.ballast/hooks/`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreConnect => "pre-connect",
            Hook::PreBuild => "pre-build",
            Hook::PreDeploy => "pre-deploy",
            Hook::PostDeploy => "post-deploy",
            Hook::PostRollback => "post-rollback",
        }
    }

    /// Whether its failure stops the command.
    pub fn blocks(self) -> bool {
        matches!(self, Hook::PreConnect | Hook::PreBuild | Hook::PreDeploy)
    }
}

/// What a hook is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookEnv {
    pub service: String,
    pub command: String,
    pub version: Option<String>,
    pub hosts: Vec<String>,
    pub roles: Vec<String>,
    pub performer: String,
    pub destination: Option<String>,
    pub outcome: Option<String>,
}

impl HookEnv {
    /// The variables, in a fixed order.
    pub fn vars(&self, hook: Hook) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("BALLAST_HOOK", hook.name().to_string()),
            ("BALLAST_SERVICE", self.service.clone()),
            ("BALLAST_COMMAND", self.command.clone()),
            ("BALLAST_VERSION", self.version.clone().unwrap_or_default()),
            ("BALLAST_HOSTS", self.hosts.join(",")),
            ("BALLAST_ROLES", self.roles.join(",")),
            ("BALLAST_PERFORMER", self.performer.clone()),
            (
                "BALLAST_DESTINATION",
                self.destination.clone().unwrap_or_default(),
            ),
        ];
        if let Some(outcome) = &self.outcome {
            vars.push(("BALLAST_OUTCOME", outcome.clone()));
        }
        vars
    }
}

/// The hooks directory of a config in `dir`.
pub fn dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".ballast").join("hooks")
}

/// Runs `hook` from `hooks_dir` if it exists. Its output is returned line
/// by line through `on_line` (prefixed by the caller).
pub async fn run(
    hooks_dir: &Path,
    hook: Hook,
    env: &HookEnv,
    deadline: Duration,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let path = hooks_dir.join(hook.name());
    let step = format!("run the {} hook", hook.name());
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(());
    };
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::input(
            &step,
            format_args!("{} is not an executable file", path.display()),
        )
        .hint(format!(
            "make it executable (`chmod +x {}`) or remove it",
            path.display()
        )));
    }
    let mut cmd = tokio::process::Command::new(&path);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .envs(env.vars(hook))
        .current_dir(
            hooks_dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(hooks_dir),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::failed(&step, format_args!("{}: {e}", path.display())))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let work = async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(s) = out.as_mut() {
                let _ = s.read_to_end(&mut o).await;
            }
        };
        let read_err = async {
            if let Some(s) = err.as_mut() {
                let _ = s.read_to_end(&mut e).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (status, o, e)
    };
    let (status, stdout, stderr) = match tokio::time::timeout(deadline, work).await {
        Ok(done) => done,
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                &step,
                format_args!(
                    "{} did not finish within {}; it was stopped",
                    path.display(),
                    crate::error::humanize(deadline)
                ),
            )
            .hint("make the hook finish sooner, or raise `hooks.timeout` in the config"))
        }
    };
    for line in String::from_utf8_lossy(&stdout)
        .lines()
        .chain(String::from_utf8_lossy(&stderr).lines())
    {
        on_line(line);
    }
    let status = status.map_err(|e| Error::failed(&step, e))?;
    if status.success() {
        return Ok(());
    }
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_string(),
    };
    Err(
        Error::failed(&step, format_args!("{} {how}", path.display())).hint(if hook.blocks() {
            "nothing was changed on the hosts; fix what the hook checks, or the hook itself, and run again"
        } else {
            "the command itself went as reported above; only the hook failed"
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    fn hook_file(dir: &Path, name: &str, body: &str, mode: u32) {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn env() -> HookEnv {
        HookEnv {
            service: "shop".into(),
            command: "deploy --version v2".into(),
            version: Some("v2".into()),
            hosts: vec!["h1".into(), "h2".into()],
            roles: vec!["web".into()],
            performer: "ana@laptop".into(),
            destination: Some("staging".into()),
            outcome: Some("ok".into()),
        }
    }

    async fn run_collect(dir: &Path, hook: Hook, deadline: Duration) -> (Result<()>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let r = run(dir, hook, &env(), deadline, &|l| {
            lines.lock().unwrap().push(l.to_string())
        })
        .await;
        (r, lines.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_missing_hook_is_no_hook() {
        let dir = tempfile::tempdir().unwrap();
        let (r, lines) = run_collect(dir.path(), Hook::PreDeploy, DEFAULT_DEADLINE).await;
        assert!(r.is_ok());
        assert!(lines.is_empty());
    }

    #[tokio::test]
    async fn a_hook_sees_its_variables_and_only_them() {
        let dir = tempfile::tempdir().unwrap();
        hook_file(
            dir.path(),
            "post-deploy",
            "#!/bin/sh\necho \"$BALLAST_HOOK $BALLAST_SERVICE $BALLAST_VERSION $BALLAST_HOSTS $BALLAST_OUTCOME $BALLAST_DESTINATION $BALLAST_PERFORMER\"\necho \"secret=${DATABASE_PASSWORD:-none}\" >&2\n",
            0o755,
        );
        std::env::set_var("DATABASE_PASSWORD", "hunter2");
        let (r, lines) = run_collect(dir.path(), Hook::PostDeploy, DEFAULT_DEADLINE).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            lines,
            [
                "post-deploy shop v2 h1,h2 ok staging ana@laptop",
                "secret=none"
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_pre_hook_is_named_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        hook_file(dir.path(), "pre-deploy", "#!/bin/sh\nexit 3\n", 0o755);
        let (r, _) = run_collect(dir.path(), Hook::PreDeploy, DEFAULT_DEADLINE).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert_eq!(e.step, "run the pre-deploy hook");
        assert!(e.cause.ends_with("pre-deploy exited with status 3"), "{e}");
        assert!(e.hint.unwrap().starts_with("nothing was changed"));
    }

    #[tokio::test]
    async fn a_hook_that_is_not_executable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        hook_file(dir.path(), "pre-connect", "#!/bin/sh\nexit 0\n", 0o644);
        let (r, _) = run_collect(dir.path(), Hook::PreConnect, DEFAULT_DEADLINE).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(e.cause.contains("is not an executable file"), "{e}");
        assert!(e.hint.unwrap().contains("chmod +x"));
    }

    #[tokio::test]
    async fn a_hook_that_hangs_is_stopped_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        hook_file(dir.path(), "pre-build", "#!/bin/sh\nsleep 30\n", 0o755);
        let started = std::time::Instant::now();
        let (r, _) = run_collect(dir.path(), Hook::PreBuild, Duration::from_millis(300)).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.cause.contains("did not finish within 300ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
