//! Semantic checks: what serde and the schema cannot say about a
//! well-shaped `ballast.yml`. Here: the service name, the image reference,
//! clear-versus-secret variables, a batch given as a percentage, and
//! features not available yet; the checks of each role's hosts, ports and
//! volumes are in `roles`, the limits of durations and counts in `bounds`. Each error points, through the located tree, at the node to fix;
//! the first in the file is reported.

use super::error::{ConfigError, Source};
use super::names::*;
use super::node::{self, shorten, Located};
use super::schema::*;

/// Runs every check; returns the error that comes first in the file.
pub(crate) fn check(config: &Config, root: &Located, src: &Source) -> Result<(), ConfigError> {
    let mut c = Checker {
        root,
        src,
        errors: Vec::new(),
    };
    c.service(config);
    c.image(&config.image);
    c.registry(config);
    c.docker(&config.docker);
    c.roles(config);
    c.accessories(config);
    c.backups(config);
    c.inventory(config);
    c.proxies(config);
    c.tls(config);
    c.deploy(&config.deploy);
    c.logging(config);
    c.stop_timeouts(config);
    c.health_deadlines(config);
    c.watch(config);
    let mut errors = c.errors;
    errors.sort_by_key(ConfigError::position);
    errors.into_iter().next().map_or(Ok(()), Err)
}

/// Collects the errors of every check.
pub(super) struct Checker<'a> {
    pub(super) root: &'a Located,
    src: &'a Source<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    /// Records an error at the value at `path` (or the deepest part of it
    /// that is in the file) and returns it for the label and hint.
    pub(super) fn error(&mut self, path: &[&str], message: String) -> &mut ConfigError {
        let (node, _) = node::find(self.root, path);
        self.push(self.src.error(node, message))
    }

    /// Same, at the key of `path` rather than its value.
    pub(super) fn key_error(&mut self, path: &[&str], message: String) -> &mut ConfigError {
        let error = match node::find_key(self.root, path) {
            Some(key) => self.src.error(key, message),
            None => self.src.error(node::find(self.root, path).0, message),
        };
        self.push(error)
    }

    fn push(&mut self, e: ConfigError) -> &mut ConfigError {
        self.errors.push(e);
        self.errors.last_mut().expect("just pushed")
    }

    fn registry(&mut self, config: &Config) {
        let method = config.delivery.method();
        match (method, config.delivery.registry()) {
            (Delivery::Registry, None) => {
                self.error(&["delivery"], "delivery `registry` needs the registry's settings".into())
                    .set_label("which registry?")
                    .set_hint("give them: `delivery: { method: registry, registry: { server: registry.example.com:5000, username: deploy, password_secret: REGISTRY_PASSWORD } }`");
            }
            (Delivery::Direct, Some(_)) => {
                self.key_error(
                    &["delivery", "registry"],
                    "`delivery.registry` is used only with `method: registry`".into(),
                )
                .set_hint("add `method: registry` to `delivery`, or remove `registry`");
            }
            (_, Some(r)) => {
                if image_problem(&format!("{}/app", r.server)).is_some()
                    || r.server.contains('/')
                    || r.server.is_empty()
                {
                    self.error(
                        &["delivery", "registry", "server"],
                        format!("`{}` is not a registry address", shorten(&r.server)),
                    )
                    .set_hint("give HOST or HOST:PORT, as image references spell it, e.g. `registry.example.com:5000`");
                }
                // Docker reads a first path part without `.` or `:` (but
                // `localhost`) as a Docker Hub user: images, and the
                // password, would go to Docker Hub.
                else if !r.server.contains(['.', ':']) && r.server != "localhost" {
                    self.error(
                        &["delivery", "registry", "server"],
                        format!("`{}` would be read as a Docker Hub account, not a registry", shorten(&r.server)),
                    )
                    .set_hint("give the registry's full name or its port, e.g. `registry.internal:5000` or `registry.example.com`");
                }
                if let Some(repo) = &r.repository {
                    if image_problem(repo).is_some() || repo.contains(':') || repo.contains('@') {
                        self.error(
                            &["delivery", "registry", "repository"],
                            format!("`{}` is not a repository name", shorten(repo)),
                        )
                        .set_hint(
                            "lowercase path components separated by `/`, no tag, e.g. `team/shop`",
                        );
                    }
                }
                if !is_env_name(&r.password_secret) {
                    self.error(
                        &["delivery", "registry", "password_secret"],
                        format!("`{}` is not a secret's name", shorten(&r.password_secret)),
                    )
                    .set_hint("name the secret (letters, digits and `_`), never the password: its value comes from your environment or .ballast/secrets");
                }
            }
            (Delivery::Direct, None) => {}
        }
    }

    fn docker(&mut self, docker: &DockerEngine) {
        let Some(version) = &docker.version else {
            return;
        };
        if !crate::setup::is_package_version(version) {
            self.error(
                &["docker", "version"],
                format!("`{}` is not a package version", shorten(version)),
            )
            .set_label("not a package version")
            .set_hint("give the version as the package manager lists it, e.g. `apt-cache madison docker.io` on Debian: `docker: { version: \"20.10.24+dfsg1-1+deb12u1\" }`");
        }
    }

    fn service(&mut self, config: &Config) {
        if !is_valid_name(&config.service) {
            let msg = format!("service name `{}` is not valid", shorten(&config.service));
            let fix = suggest_name(&config.service);
            self.error(&["service"], msg)
                .set_label("lowercase letters, digits and hyphens only")
                .set_hint(format!(
                    "use lowercase letters, digits and hyphens (up to 63), e.g. `service: {}`",
                    if fix.is_empty() { "shop" } else { &fix }
                ));
        }
    }

    fn image(&mut self, image: &str) {
        if let Some((msg, hint)) = image_problem(image) {
            self.error(&["image"], msg)
                .set_label("invalid image reference")
                .set_hint(hint);
        }
    }

    pub(super) fn env(&mut self, role: &str, r: &Role) {
        for name in r.env.clear.keys() {
            if !is_env_name(name) {
                self.key_error(
                    &["roles", role, "env", "clear", name],
                    format!(
                        "roles.{role}.env.clear: `{}` is not a valid variable name",
                        shorten(name)
                    ),
                )
                .set_hint("use letters, digits and `_`, not starting with a digit");
            }
        }
        for (i, name) in r.env.secret.iter().enumerate() {
            let idx = i.to_string();
            let path = ["roles", role, "env", "secret", idx.as_str()];
            if !is_env_name(name) {
                self.error(&path, format!("roles.{role}.env.secret[{i}]: `{}` is not a valid variable name", shorten(name)))
                    .set_hint("list variable NAMES here (letters, digits and `_`), never values: values come from your environment or .ballast/secrets");
            } else if r.env.clear.contains_key(name) {
                self.error(&path, format!("roles.{role}.env.secret[{i}]: `{name}` is both in `env.clear` and `env.secret`"))
                    .set_label("also in env.clear")
                    .set_hint(format!("a variable is clear or secret, not both: remove `{name}` from `env.clear` if it is a secret"));
            } else if r.env.secret[..i].contains(name) {
                self.error(
                    &path,
                    format!("roles.{role}.env.secret[{i}]: `{name}` is listed twice"),
                )
                .set_hint("remove the repeated name");
            }
        }
        for (i, host) in r.hosts.iter().enumerate() {
            let HostEntry::WithEnv(h) = host else {
                continue;
            };
            for name in h.env.keys() {
                let idx = i.to_string();
                let path = ["roles", role, "hosts", idx.as_str(), "env", name.as_str()];
                if r.env.secret.contains(name) {
                    self.key_error(
                        &path,
                        format!(
                            "roles.{role}.hosts[{i}].env: `{name}` is a secret of role `{role}`"
                        ),
                    )
                    .set_hint(format!(
                        "per-host variables are clear: remove `{name}` here, or from `env.secret`"
                    ));
                } else if !is_env_name(name) {
                    self.key_error(
                        &path,
                        format!(
                            "roles.{role}.hosts[{i}].env: `{}` is not a valid variable name",
                            shorten(name)
                        ),
                    )
                    .set_hint("use letters, digits and `_`, not starting with a digit");
                }
            }
        }
    }

    /// Docker counts a stop timeout in whole seconds: a fraction would be
    /// cut off (`500ms` to a kill right after SIGTERM).
    fn stop_timeouts(&mut self, config: &Config) {
        for (name, role) in &config.roles {
            let Some(t) = role.stop_timeout.filter(|t| t.subsec_nanos() != 0) else {
                continue;
            };
            self.error(
                &["roles", name, "stop_timeout"],
                format!(
                    "roles.{name}.stop_timeout: `{}` is not a whole number of seconds",
                    humantime::format_duration(t)
                ),
            )
            .set_label("whole seconds only")
            .set_hint(format!(
                "Docker counts a stop timeout in whole seconds and would cut the rest off: write `{}s`",
                t.as_secs() + 1
            ));
        }
    }

    /// A batch given as a percentage; the limits of a count are in `bounds`.
    fn deploy(&mut self, d: &DeploySettings) {
        let Batch::Percent(p) = &d.batch else {
            return;
        };
        let path = ["deploy", "batch"];
        match parse_percent(p) {
            Some(1..=100) => {}
            Some(_) => {
                self.error(
                    &path,
                    format!("deploy.batch: `{}` is not from 1% to 100%", shorten(p)),
                )
                .set_hint("use a percentage from `\"1%\"` to `\"100%\"`, or a number of hosts");
            }
            None => {
                self.error(
                    &path,
                    format!(
                        "deploy.batch: `{}` is neither a number of hosts nor a percentage",
                        shorten(p)
                    ),
                )
                .set_hint("write a number of hosts (`2`) or a percentage written `N%` (`\"25%\"`)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n";

    fn with_image(image: &str) -> String {
        format!("service: shop\nimage: {image}\nroles:\n  web:\n    hosts: [a]\n")
    }

    #[test]
    fn names_must_be_lowercase_letters_digits_and_hyphens() {
        let yaml = HEAD.replace("service: shop", "service: My_Shop");
        assert_error(
            &yaml,
            1,
            10,
            "service name `My_Shop` is not valid",
            "e.g. `service: my-shop`",
        );
        let yaml = HEAD.replace("  web:", "  Web_1:");
        assert_error(
            &yaml,
            4,
            3,
            "role name `Web_1` is not valid",
            "e.g. `web-1`",
        );
    }

    #[test]
    fn image_references_are_checked() {
        assert_error(
            &with_image("Shop"),
            2,
            8,
            "repository names are lowercase",
            "use `shop`",
        );
        assert_error(
            &with_image("\"shop:\""),
            2,
            8,
            "image tag `` is not valid",
            "a tag is",
        );
        assert_error(
            &with_image("shop@sha256:abc"),
            2,
            8,
            "image digest `sha256:abc` is not valid",
            "64 lowercase hex",
        );
        assert_error(
            &with_image("-shop"),
            2,
            8,
            "not a valid image reference",
            "[REGISTRY[:PORT]/]NAME[:TAG]",
        );
        assert!(parse_yaml(&with_image("ghcr.io/acme/shop:1.4")).is_ok());
    }

    #[test]
    fn batch_and_retain_must_make_progress() {
        let yaml = format!("{HEAD}deploy: {{batch: 0}}\n");
        assert_error(
            &yaml,
            6,
            17,
            "deploy.batch: 0 is less than 1, the least allowed",
            "a batch of 0 hosts would never deploy",
        );
        let yaml = format!("{HEAD}deploy: {{batch: 150%}}\n");
        assert_error(&yaml, 6, 17, "`150%` is not from 1% to 100%", "\"1%\"");
        let yaml = format!("{HEAD}deploy: {{batch: 0%}}\n");
        assert_error(&yaml, 6, 17, "`0%` is not from 1% to 100%", "\"100%\"");
        let yaml = format!("{HEAD}deploy: {{batch: half}}\n");
        assert_error(
            &yaml,
            6,
            17,
            "`half` is neither a number of hosts nor a percentage",
            "`N%`",
        );
        let yaml = format!("{HEAD}deploy:\n  retain: 0\n");
        assert_error(
            &yaml,
            7,
            11,
            "deploy.retain: 0 is less than 1, the least allowed",
            "0 would keep no release, not even the running one",
        );
        let ok = parse_yaml(&format!("{HEAD}deploy: {{batch: 25%}}\n")).unwrap();
        assert_eq!(ok.config.deploy.batch.percent(), Some(25));
    }

    #[test]
    fn env_variables_are_clear_or_secret_not_both() {
        let yaml = format!(
            "{HEAD}    env:\n      clear: {{DB_PASSWORD: x}}\n      secret: [DB_PASSWORD]\n"
        );
        assert_error(
            &yaml,
            8,
            16,
            "`DB_PASSWORD` is both in `env.clear` and `env.secret`",
            "remove `DB_PASSWORD` from `env.clear`",
        );
        let yaml = format!("{HEAD}    env: {{secret: [\"db password\"]}}\n");
        assert_error(
            &yaml,
            6,
            20,
            "`db password` is not a valid variable name",
            "NAMES",
        );
        let yaml = format!("{HEAD}    env: {{clear: {{1X: a}}}}\n");
        assert_error(
            &yaml,
            6,
            19,
            "`1X` is not a valid variable name",
            "not starting with a digit",
        );
    }

    #[test]
    fn stop_timeouts_are_whole_seconds() {
        let yaml = format!("{HEAD}    stop_timeout: 1500ms\n");
        assert_error(
            &yaml,
            6,
            19,
            "roles.web.stop_timeout: `1s 500ms` is not a whole number of seconds",
            "write `2s`",
        );
        assert!(parse_yaml(&format!("{HEAD}    stop_timeout: 0s\n")).is_ok());
        assert!(parse_yaml(&format!("{HEAD}    stop_timeout: 1m\n")).is_ok());
    }

    #[test]
    fn registry_delivery_needs_its_registry_and_checks_it() {
        let yaml = format!("{HEAD}delivery: registry\n");
        assert_error(
            &yaml,
            6,
            11,
            "delivery `registry` needs the registry's settings",
            "password_secret: REGISTRY_PASSWORD",
        );
        let yaml = format!(
            "{HEAD}delivery:\n  registry: {{ server: r, username: u, password_secret: P }}\n"
        );
        assert_error(
            &yaml,
            7,
            3,
            "`delivery.registry` is used only with `method: registry`",
            "add `method: registry`",
        );
        let yaml = format!("{HEAD}delivery:\n  method: registry\n  registry: {{ server: \"https://r:5000\", username: u, password_secret: P }}\n");
        assert_error(
            &yaml,
            8,
            23,
            "`https://r:5000` is not a registry address",
            "HOST:PORT",
        );
        let yaml = format!("{HEAD}delivery:\n  method: registry\n  registry: {{ server: \"r:5000\", username: u, password_secret: \"hunter2!\" }}\n");
        assert_error(
            &yaml,
            8,
            63,
            "`hunter2!` is not a secret's name",
            "never the password",
        );
        let yaml = format!("{HEAD}delivery:\n  method: registry\n  registry: {{ server: \"r:5000\", repository: \"team/shop:1\", username: u, password_secret: P }}\n");
        assert_error(
            &yaml,
            8,
            45,
            "`team/shop:1` is not a repository name",
            "no tag",
        );
        let yaml = format!("{HEAD}delivery:\n  method: registry\n  registry: {{ server: myregistry, username: u, password_secret: P }}\n");
        assert_error(
            &yaml,
            8,
            23,
            "`myregistry` would be read as a Docker Hub account, not a registry",
            "registry.internal:5000",
        );
    }

    #[test]
    fn a_registry_password_is_a_secret_like_the_roles_ones() {
        let yaml = format!("{HEAD}delivery:\n  method: registry\n  registry: {{ server: \"r:5000\", username: u, password_secret: BALLAST_TEST_NO_SUCH_SECRET }}\n");
        assert_error(
            &yaml,
            8,
            63,
            "delivery.registry.password_secret: secret `BALLAST_TEST_NO_SUCH_SECRET` is not defined",
            "export BALLAST_TEST_NO_SUCH_SECRET=...",
        );
    }

    #[test]
    fn the_first_error_in_the_file_is_reported() {
        let yaml = "service: Shop\nimage: Shop\nroles:\n  web:\n    hosts: []\n";
        assert_error(yaml, 1, 10, "service name", "lowercase");
    }
}
