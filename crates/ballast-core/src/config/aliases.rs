//! Aliases: commands of the operator's own (`console: "exec web -i -- rails
//! c"`). Their words are split as a POSIX shell would (shlex), never run by
//! a shell. The config cannot know ballast's commands, so the command line
//! passes them in: an alias may not hide a command, and must expand to one.

use super::error::{ConfigError, Source};
use super::names::is_valid_name;
use super::node::{self, shorten};
use super::Loaded;

impl Loaded {
    /// The words `name` expands to, if it is an alias.
    pub fn alias(&self, name: &str) -> Option<Vec<String>> {
        shlex::split(self.config.aliases.get(name)?)
    }

    /// Checks every alias against `commands` (ballast's command names):
    /// the first problem, located at the alias in the file.
    pub fn check_aliases(&self, commands: &[&str]) -> Result<(), ConfigError> {
        if self.config.aliases.is_empty() {
            return Ok(());
        }
        let src = Source::new(&self.path, &self.source);
        let root = node::parse(&self.source).map_err(|e| src.yaml_error(&e, false))?;
        for (name, expansion) in &self.config.aliases {
            let key = || node::find_key(&root, &["aliases", name]).unwrap_or(&root);
            let value = || node::find(&root, &["aliases", name]).0;
            if !is_valid_name(name) {
                return Err(src
                    .error(
                        key(),
                        format!("aliases: `{}` is not a valid alias name", shorten(name)),
                    )
                    .with_hint("use lowercase letters, digits and hyphens"));
            }
            if commands.contains(&name.as_str()) {
                return Err(src
                    .error(key(), format!("aliases: `{name}` is a ballast command"))
                    .with_label("hides a command")
                    .with_hint("an alias cannot replace a command: choose another name"));
            }
            let words = shlex::split(expansion).unwrap_or_default();
            let Some(first) = words.first() else {
                return Err(src
                    .error(value(), format!("aliases.{name}: `{}` is not a command line", shorten(expansion)))
                    .with_hint("write the command and its arguments, e.g. `\"logs --roles web -f\"`; close every quote"));
            };
            if !commands.contains(&first.as_str()) {
                return Err(src
                    .error(
                        value(),
                        format!(
                            "aliases.{name}: `{}` is not a ballast command",
                            shorten(first)
                        ),
                    )
                    .with_label("unknown command")
                    .with_hint(format!(
                        "an alias runs a ballast command; the commands are: {}",
                        commands.join(", ")
                    )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse_yaml;

    const COMMANDS: &[&str] = &["deploy", "logs", "status"];

    fn with_aliases(aliases: &str) -> String {
        format!("service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\naliases:\n{aliases}")
    }

    #[test]
    fn an_alias_expands_to_its_words() {
        let loaded = parse_yaml(&with_aliases(
            "  tail: \"logs --roles web -f --grep 'GET /'\"\n",
        ))
        .unwrap();
        loaded.check_aliases(COMMANDS).unwrap();
        assert_eq!(
            loaded.alias("tail").unwrap(),
            ["logs", "--roles", "web", "-f", "--grep", "GET /"]
        );
        assert_eq!(loaded.alias("nope"), None);
    }

    #[test]
    fn an_alias_to_an_unknown_command_is_located() {
        let loaded = parse_yaml(&with_aliases("  console: exec web -i -- rails c\n")).unwrap();
        let e = loaded.check_aliases(COMMANDS).unwrap_err();
        assert_eq!((e.line(), e.column()), (7, 12));
        assert!(
            e.message().contains("`exec` is not a ballast command"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("deploy, logs, status"));
    }

    #[test]
    fn an_alias_may_not_hide_a_command_or_be_empty() {
        let loaded = parse_yaml(&with_aliases("  deploy: status\n")).unwrap();
        let e = loaded.check_aliases(COMMANDS).unwrap_err();
        assert_eq!((e.line(), e.column()), (7, 3));
        assert!(e.message().contains("`deploy` is a ballast command"), "{e}");
        let loaded = parse_yaml(&with_aliases("  x: \"'unclosed\"\n")).unwrap();
        let e = loaded.check_aliases(COMMANDS).unwrap_err();
        assert!(e.message().contains("is not a command line"), "{e}");
    }
}
