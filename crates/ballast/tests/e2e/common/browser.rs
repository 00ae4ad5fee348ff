//! A page as a browser shows it: Debian's `chromium`, headless, loads a URL
//! and gives back its rendered DOM (read into plain elements by Python's
//! HTML parser) or a screenshot (whose pixels can be counted by colour);
//! and the deadline-bound runs of outside tools those need.
//!
//! Chromium runs as root in a container, so without its sandbox; in a
//! throwaway profile; with its background services off and every address
//! but 127.0.0.1 resolved to nothing, so that it reaches only the loopback
//! server it is pointed at.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one run of Chromium or Python may take before it is killed.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(60);

/// The Python that reads DOMs and PNGs (standard library only).
pub const PYTHON: &str = "python3";

/// Runs `cmd` with `input` on stdin; kills it and fails the test when it
/// outlives `deadline`. `Err` when it cannot be started.
pub fn try_run_within(
    mut cmd: Command,
    input: &[u8],
    deadline: Duration,
) -> std::io::Result<Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread, so a large input never blocks against a full
    // stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {deadline:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = writer.join();
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// [`try_run_within`] of a command that must start and succeed.
pub fn run_ok_within(cmd: Command, input: &[u8], deadline: Duration) -> Output {
    let what = format!("{cmd:?}");
    let out = try_run_within(cmd, input, deadline).unwrap_or_else(|e| panic!("start {what}: {e}"));
    assert!(out.status.success(), "{what}\n{}", super::text(&out));
    out
}

/// Whether `chromium --version` answers.
pub fn chromium_answers() -> bool {
    let mut cmd = Command::new("chromium");
    cmd.arg("--version");
    try_run_within(cmd, b"", TOOL_DEADLINE).is_ok_and(|o| o.status.success())
}

/// `chromium --headless ARGS URL`, within [`TOOL_DEADLINE`].
fn chromium(url: &str, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        // Root in a container has no user namespace for the sandbox.
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url);
    run_ok_within(cmd, b"", TOOL_DEADLINE)
}

/// The DOM of `url` once Chromium has loaded it, serialised.
pub fn dump_dom(url: &str) -> String {
    let out = chromium(url, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    // A page that did not load still exits 0, with nothing on stdout.
    assert!(
        dom.contains("<html"),
        "chromium loaded nothing from {url}\n{}",
        super::text(&out)
    );
    dom
}

/// Saves a PNG of `url` as Chromium renders it in a `width`×`height`
/// window to `path`.
pub fn screenshot(url: &str, path: &Path, (width, height): (u32, u32)) {
    let _ = std::fs::remove_file(path);
    chromium(
        url,
        &[
            &format!("--screenshot={}", path.display()),
            &format!("--window-size={width},{height}"),
        ],
    );
}

/// Runs Python `script` with `args` and `input` on stdin; its JSON answer.
pub fn python_json(python: &str, script: &str, args: &[&str], input: &[u8]) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script).args(args);
    let out = run_ok_within(cmd, input, TOOL_DEADLINE);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", super::text(&out)))
}

/// Every element of a serialised DOM that has a class or a `data-`
/// attribute, in document order: its tag, attributes, text (a `<br>` as a
/// space) and the index of the nearest such element around it.
const READ_ELEMENTS: &str = r##"
import json, sys
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found, self.open = [], []
    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.handle_data(" ")
        if tag in VOID:
            return
        a = {k: v or "" for k, v in attrs}
        index = None
        if "class" in a or any(k.startswith("data-") for k in a):
            parents = [i for _, i in self.open if i is not None]
            index = len(self.found)
            self.found.append({"tag": tag, "attrs": a, "text": "", "parent": parents[-1] if parents else None})
        self.open.append((tag, index))
    def handle_endtag(self, tag):
        while self.open:
            if self.open.pop()[0] == tag:
                break
    def handle_data(self, data):
        for _, i in self.open:
            if i is not None:
                self.found[i]["text"] += data

page = Elements()
page.feed(sys.stdin.read())
print(json.dumps(page.found))
"##;

/// An element of a rendered page, as [`elements`] reads it.
#[derive(Debug, Clone)]
pub struct Element {
    pub tag: String,
    pub attrs: std::collections::BTreeMap<String, String>,
    /// Its text and its descendants', whitespace runs as one space.
    pub text: String,
    /// The index of the nearest element around it that is listed too.
    pub parent: Option<usize>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }
}

/// The elements of `dom` that have a class or a `data-` attribute, in
/// document order.
pub fn elements(dom: &str) -> Vec<Element> {
    let found = python_json(PYTHON, READ_ELEMENTS, &[], dom.as_bytes());
    found
        .as_array()
        .expect("a list of elements")
        .iter()
        .map(|e| Element {
            tag: e["tag"].as_str().unwrap_or_default().to_string(),
            attrs: e["attrs"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            text: e["text"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            parent: e["parent"].as_u64().map(|i| i as usize),
        })
        .collect()
}

/// Reads an 8-bit RGB(A) PNG with Python's zlib and counts the pixels of
/// each colour asked for (`#rrggbb` arguments).
const COUNT_COLOURS: &str = r##"
import json, struct, sys, zlib

data = sys.stdin.buffer.read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
bpp = 3 if colour == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, at = bytearray(stride), 0
wanted = {bytes.fromhex(c.lstrip("#")): c for c in sys.argv[1:]}
counts = {c: 0 for c in sys.argv[1:]}
for _ in range(h):
    f, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
    at += 1 + stride
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for i in range(0, stride, bpp):
        name = wanted.get(bytes(line[i:i + 3]))
        if name:
            counts[name] += 1
    prev = line
print(json.dumps({"width": w, "height": h, "counts": counts}))
"##;

/// What a screenshot holds, as far as a test asks.
#[derive(Debug)]
pub struct Pixels {
    pub width: u64,
    pub height: u64,
    /// Pixels of each colour asked for, by its `#rrggbb`.
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// The size of the PNG `png` and its pixels of each of `colours`
/// (`#rrggbb`, exactly).
pub fn count_colours(png: &[u8], colours: &[&str]) -> Pixels {
    let seen = python_json(PYTHON, COUNT_COLOURS, colours, png);
    Pixels {
        width: seen["width"].as_u64().unwrap_or_default(),
        height: seen["height"].as_u64().unwrap_or_default(),
        counts: colours
            .iter()
            .map(|c| (c.to_string(), seen["counts"][*c].as_u64().unwrap_or(0)))
            .collect(),
    }
}
