//! `ConfigError`: what is wrong in `ballast.yml`, where (file, line, column,
//! span) and how to fix it. Printed as `PATH:LINE:COLUMN: message`, rendered
//! by miette with the source snippet, and convertible to [`crate::Error`].
//! Also the `Source` that turns serde-saphyr locations into such errors.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::{LabeledSpan, NamedSource, SourceSpan};
use serde_saphyr::{Location, MessageFormatter};

use super::node::Located;

/// A problem in a config file, located and with the fix.
#[derive(Clone)]
pub struct ConfigError(Box<Details>);

#[derive(Clone)]
struct Details {
    path: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (it is missing).
    line: usize,
    /// 1-based, in characters.
    column: usize,
    /// Byte offset and length of the offending text, for the snippet.
    span: Option<(usize, usize)>,
    message: String,
    /// Short text under the snippet's pointer.
    label: String,
    hint: Option<String>,
    /// The file's text, for miette. `None` when it must not be shown
    /// (the secrets file) or was never read.
    snippet: Option<NamedSource<String>>,
}

impl ConfigError {
    /// An error about the file as a whole (it cannot be read, ...).
    pub(crate) fn whole_file(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError(Box::new(Details {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            span: None,
            message: message.into(),
            label: String::new(),
            hint: None,
            snippet: None,
        }))
    }

    /// An error at a line of a file whose text must not be shown.
    pub(crate) fn at_line(path: &Path, line: usize, message: impl Into<String>) -> ConfigError {
        let mut e = ConfigError::whole_file(path, message);
        (e.0.line, e.0.column) = (line, 1);
        e
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> ConfigError {
        self.set_hint(hint);
        self
    }

    pub(crate) fn with_label(mut self, label: impl Into<String>) -> ConfigError {
        self.set_label(label);
        self
    }

    pub(crate) fn set_hint(&mut self, hint: impl Into<String>) -> &mut ConfigError {
        self.0.hint = Some(hint.into());
        self
    }

    pub(crate) fn set_label(&mut self, label: impl Into<String>) -> &mut ConfigError {
        self.0.label = label.into();
        self
    }

    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
    /// 1-based line; 0 when the problem is not at a place in the file.
    pub fn line(&self) -> usize {
        self.0.line
    }
    /// 1-based column, in characters.
    pub fn column(&self) -> usize {
        self.0.column
    }
    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// How to fix it.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }
    /// Byte offset of the offending text in the file.
    pub fn offset(&self) -> Option<usize> {
        self.0.span.map(|(o, _)| o)
    }

    /// Sort key: errors found together are reported first-in-file first.
    pub(crate) fn position(&self) -> (usize, usize) {
        (self.0.line, self.0.column)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.line == 0 {
            write!(f, "{}: {}", self.0.path.display(), self.0.message)
        } else {
            let (path, line, column) = (self.0.path.display(), self.0.line, self.0.column);
            write!(f, "{path}:{line}:{column}: {}", self.0.message)
        }
    }
}

/// Short on purpose: the file's text is not dumped into logs.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigError")
            .field("path", &self.0.path)
            .field("line", &self.0.line)
            .field("column", &self.0.column)
            .field("message", &self.0.message)
            .field("hint", &self.0.hint)
            .finish()
    }
}

impl std::error::Error for ConfigError {}

impl miette::Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("ballast::config"))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0
            .hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0
            .snippet
            .as_ref()
            .map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (offset, len) = self.0.span?;
        self.0.snippet.as_ref()?;
        let label = (!self.0.label.is_empty()).then(|| self.0.label.clone());
        let span = SourceSpan::new(offset.into(), len);
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            label, span,
        ))))
    }
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> crate::Error {
        let cause = if e.0.line == 0 {
            e.0.message.clone()
        } else {
            format!("{}:{}: {}", e.0.line, e.0.column, e.0.message)
        };
        let error = crate::Error::input(format!("read {}", e.0.path.display()), cause);
        match e.0.hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

/// The config text being checked: makes located errors from serde-saphyr
/// locations.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Source<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// An error at a 1-based `line` and `column`, covering `chars` characters.
    pub(crate) fn error_at(
        &self,
        line: usize,
        column: usize,
        chars: usize,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = (line.max(1), column.max(1));
        let (start, end) = self.byte_range(line, column, chars);
        ConfigError(Box::new(Details {
            path: self.path.to_path_buf(),
            line,
            column,
            span: Some((start, end - start)),
            message: message.into(),
            label: String::new(),
            hint: None,
            snippet: Some(NamedSource::new(
                self.path.display().to_string(),
                self.text.to_string(),
            )),
        }))
    }

    /// An error pointing at `node` (a key or a value).
    pub(crate) fn error(&self, node: &Located, message: impl Into<String>) -> ConfigError {
        let loc = node.referenced;
        let (line, column) = (loc.line() as usize, loc.column() as usize);
        self.error_at(line, column, loc.span().len() as usize, message)
    }

    /// The text of `node` as the file writes it (`99999999999999999999999`,
    /// where the node holds the nearest float).
    pub(crate) fn written(&self, node: &Located) -> &str {
        let loc = node.referenced;
        let (line, column) = (loc.line() as usize, loc.column() as usize);
        let (start, end) = self.byte_range(line.max(1), column.max(1), loc.span().len() as usize);
        &self.text[start..end]
    }

    /// Turns a serde-saphyr error into a located `ConfigError`. `typed` says
    /// whether it came from deserializing into `Config` (a shape problem)
    /// rather than from reading the YAML itself (a syntax problem).
    pub(crate) fn yaml_error(&self, e: &serde_saphyr::Error, typed: bool) -> ConfigError {
        let inner = e.without_snippet();
        let raw = serde_saphyr::DefaultMessageFormatter.format_message(inner);
        let loc = e.location().unwrap_or(Location::UNKNOWN);
        let (message, label, hint) = if let Some(key) = raw.strip_prefix("duplicate mapping key: ")
        {
            let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
            (
                format!("duplicate key `{key}`"),
                "repeated here",
                "a key may appear once per mapping: remove or merge the repeated one".to_string(),
            )
        } else if typed {
            (
                raw.to_string(),
                "here",
                "see docs/config.md for the expected shape of this key".to_string(),
            )
        } else {
            (
                format!("invalid YAML: {raw}"),
                "syntax error",
                "check the indentation, brackets and quotes around here; \
                 quote values that contain `: ` or start with `{`, `[`, `*`, `&` or `%`"
                    .to_string(),
            )
        };
        self.error_at(loc.line() as usize, loc.column() as usize, 1, message)
            .with_label(label)
            .with_hint(hint)
    }

    /// Byte offsets of `chars` characters from a 1-based line and column.
    fn byte_range(&self, line: usize, column: usize, chars: usize) -> (usize, usize) {
        let start = self.byte_offset(line, column);
        let end = self.text[start..]
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| start + i);
        (start, end)
    }

    /// Byte offset of a 1-based line and character column.
    fn byte_offset(&self, line: usize, column: usize) -> usize {
        let Some(&start) = self.line_starts.get(line - 1) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth(column - 1)
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;

    fn sample() -> ConfigError {
        let path = Path::new("conf/ballast.yml");
        let text = "service: shop\nimage: Shöp\n";
        let root = super::super::node::parse(text).unwrap();
        let image = root.value.get("image").unwrap();
        Source::new(path, text)
            .error(image, "bad image")
            .with_label("this")
            .with_hint("use lowercase")
    }

    #[test]
    fn display_is_path_line_column_message() {
        let e = sample();
        assert_eq!(e.to_string(), "conf/ballast.yml:2:8: bad image");
        assert_eq!((e.line(), e.column()), (2, 8));
        assert_eq!(e.message(), "bad image");
        assert_eq!(e.hint(), Some("use lowercase"));
    }

    #[test]
    fn diagnostic_labels_the_offending_bytes() {
        let e = sample();
        let label = e.labels().unwrap().next().unwrap();
        assert_eq!(label.offset(), "service: shop\nimage: ".len());
        assert_eq!(label.len(), "Shöp".len());
        assert_eq!(label.label(), Some("this"));
        assert_eq!(e.help().unwrap().to_string(), "use lowercase");
        assert!(e.source_code().is_some());
    }

    #[test]
    fn converts_to_an_input_error_with_the_hint() {
        let e: crate::Error = sample().into();
        assert_eq!(e.kind, crate::ErrorKind::Input);
        assert_eq!(e.step, "read conf/ballast.yml");
        assert_eq!(e.cause, "2:8: bad image");
        assert_eq!(e.hint.as_deref(), Some("use lowercase"));
    }

    #[test]
    fn errors_without_a_place_print_only_the_path() {
        let e = ConfigError::whole_file(Path::new("x.yml"), "cannot read");
        assert_eq!(e.to_string(), "x.yml: cannot read");
        let e: crate::Error = e.into();
        assert_eq!(e.cause, "cannot read");
    }
}
