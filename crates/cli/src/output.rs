//! How results are printed: tab-separated text for people and `cut`, or one JSON object per
//! line for programs.
//!
//! Paths go through [`escape_path`] everywhere they are printed as text, so that one record is
//! one line whatever a file is called; JSON keeps the exact name (see [`JsonPath`]).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use photosync_identify::{group, Distance, IdentifyError, Identity, Match};
use photosync_walk::WalkError;
use serde::Serialize;

pub struct Output {
    json: bool,
    out: BufWriter<io::Stdout>,
}

/// A path in JSON: `path` is the exact name when it is valid UTF-8; otherwise it is the escaped
/// form and `path_bytes` holds the exact bytes, percent-encoded, so a program can recover them.
#[derive(Serialize)]
struct JsonPath {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<String>,
}

impl JsonPath {
    fn new(path: &Path) -> JsonPath {
        match path.to_str() {
            Some(s) => JsonPath {
                path: s.to_owned(),
                path_bytes: None,
            },
            None => JsonPath {
                path: escape_path(path),
                path_bytes: Some(percent_encode(path.as_os_str().as_encoded_bytes())),
            },
        }
    }
}

/// A path as one line of text for people, `cut` and logs: `\\` for a backslash, `\n`, `\t`,
/// and `\xNN` for each byte of any other control character and for each byte that is not
/// UTF-8. Every `\xNN` is one byte of the name, so the escape can be undone.
pub fn escape_path(path: &Path) -> String {
    // `as_encoded_bytes` is the name itself on Unix and WTF-8 on Windows: portable, no cfg.
    escape_bytes(path.as_os_str().as_encoded_bytes())
}

/// Text from elsewhere (a reason, a server's file name) kept on one line: control characters
/// escaped as in paths. Backslashes stay as they are: free text is read, not undone, and a
/// reason quoting an escaped name would otherwise show it escaped twice.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        escape_char(c, &mut out);
    }
    out
}

fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c => escape_char(c, &mut out),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `\n`, `\t`, `\xNN` per byte of any other control character, else the character.
fn escape_char(c: char, out: &mut String) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        c => out.push(c),
    }
}

/// Every byte outside `[A-Za-z0-9-._~/]` as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[derive(Serialize)]
struct IdentityLine<'a> {
    #[serde(flatten)]
    path: JsonPath,
    identifier: String,
    digest: String,
    width: u32,
    height: u32,
    format: &'a str,
    bytes: u64,
    /// "lossy q92", "lossless", "raw".
    quality: String,
    /// The capture time from EXIF, when the file has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    taken: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    #[serde(flatten)]
    path: JsonPath,
    error: &'a str,
    reason: String,
}

#[derive(Serialize)]
struct DistanceJson {
    total: u32,
    luma: u32,
    texture: u32,
    colour: u32,
}

impl From<Distance> for DistanceJson {
    fn from(d: Distance) -> Self {
        DistanceJson {
            total: d.total(),
            luma: d.luma,
            texture: d.texture,
            colour: d.colour,
        }
    }
}

#[derive(Serialize)]
struct MemberJson {
    #[serde(flatten)]
    path: JsonPath,
    /// "best" for the copy with the most pixels, else "same_bytes" or "same_picture".
    relation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched: Option<String>,
    /// Like `path_bytes`, for `matched`.
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_bytes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<DistanceJson>,
    width: u32,
    height: u32,
    bytes: u64,
}

#[derive(Serialize)]
struct GroupJson {
    group: usize,
    members: Vec<MemberJson>,
}

fn relation_name(m: Option<&Match>) -> &'static str {
    match m {
        None => "best",
        Some(Match::SameBytes) => "same_bytes",
        Some(Match::SamePicture(_)) => "same_picture",
        Some(Match::Different(_) | Match::Refuted(..)) => "different",
    }
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output {
            json,
            out: BufWriter::new(io::stdout()),
        }
    }

    fn error_line(
        &mut self,
        path: &Path,
        code: &str,
        reason: &dyn std::fmt::Display,
    ) -> io::Result<()> {
        if self.json {
            let line = ErrorLine {
                path: JsonPath::new(path),
                error: code,
                reason: reason.to_string(),
            };
            serde_json::to_writer(&mut self.out, &line)?;
            writeln!(self.out)
        } else {
            writeln!(self.out, "{}\terror: {reason}", escape_path(path))
        }
    }

    /// One line per file: identity or error, in walk order; walk errors first.
    pub fn identify(
        &mut self,
        files: &[PathBuf],
        results: &[Result<Identity, IdentifyError>],
        walk_errors: &[WalkError],
    ) -> io::Result<()> {
        for e in walk_errors {
            self.error_line(&e.path, e.kind.code(), e)?;
        }
        for (path, result) in files.iter().zip(results) {
            match result {
                Ok(id) if self.json => {
                    let line = IdentityLine {
                        path: JsonPath::new(path),
                        identifier: id.identifier.to_string(),
                        digest: id.digest.to_string(),
                        width: id.width,
                        height: id.height,
                        format: id.format.name(),
                        bytes: id.bytes,
                        quality: id.evidence.quality.to_string(),
                        taken: id.evidence.capture.time.as_deref(),
                    };
                    serde_json::to_writer(&mut self.out, &line)?;
                    writeln!(self.out)?;
                }
                Ok(id) => writeln!(
                    self.out,
                    "{}\t{}\t{}\t{}x{}\t{}",
                    escape_path(path),
                    id.identifier,
                    id.digest,
                    id.width,
                    id.height,
                    id.format
                )?,
                Err(e) => self.error_line(path, e.code(), e)?,
            }
        }
        self.out.flush()
    }

    /// Groups of copies on stdout; files that could not be read on stderr.
    pub fn similar(
        &mut self,
        files: &[PathBuf],
        results: &[Result<Identity, IdentifyError>],
        walk_errors: &[WalkError],
    ) -> io::Result<()> {
        let mut err = io::stderr().lock();
        for e in walk_errors {
            writeln!(err, "{}\terror: {e}", escape_path(&e.path))?;
        }
        let mut ok_paths = Vec::new();
        let mut ids = Vec::new();
        for (path, result) in files.iter().zip(results) {
            match result {
                Ok(id) => {
                    ok_paths.push(path);
                    ids.push(id.clone());
                }
                Err(e) => writeln!(err, "{}\terror: {e}", escape_path(path))?,
            }
        }
        let groups = group(&ids);
        for (n, g) in groups.iter().enumerate() {
            if self.json {
                let members = g
                    .members
                    .iter()
                    .map(|m| {
                        let id = &ids[m.index];
                        let matched = m.relation.map(|_| JsonPath::new(ok_paths[m.matched]));
                        let (matched, matched_bytes) =
                            matched.map_or((None, None), |j| (Some(j.path), j.path_bytes));
                        MemberJson {
                            path: JsonPath::new(ok_paths[m.index]),
                            relation: relation_name(m.relation.as_ref()),
                            matched,
                            matched_bytes,
                            distance: match m.relation {
                                Some(Match::SamePicture(d) | Match::Different(d)) => Some(d.into()),
                                _ => None,
                            },
                            width: id.width,
                            height: id.height,
                            bytes: id.bytes,
                        }
                    })
                    .collect();
                serde_json::to_writer(
                    &mut self.out,
                    &GroupJson {
                        group: n + 1,
                        members,
                    },
                )?;
                writeln!(self.out)?;
                continue;
            }
            writeln!(self.out, "group {} ({} files)", n + 1, g.members.len())?;
            for m in &g.members {
                let id = &ids[m.index];
                let relation = match m.relation {
                    None => "best copy".to_owned(),
                    Some(Match::SameBytes) => "same bytes".to_owned(),
                    Some(Match::SamePicture(d)) => format!("same picture, distance {d}"),
                    Some(Match::Different(d)) => format!("different, distance {d}"),
                    Some(Match::Refuted(d, why)) => format!("different ({why}), distance {d}"),
                };
                let via = if m.relation.is_some() && m.matched != g.members[0].index {
                    format!(" (as {})", escape_path(ok_paths[m.matched]))
                } else {
                    String::new()
                };
                writeln!(
                    self.out,
                    "  {}\t{}x{}\t{relation}{via}",
                    escape_path(ok_paths[m.index]),
                    id.width,
                    id.height
                )?;
            }
        }
        let in_groups: usize = groups.iter().map(|g| g.members.len()).sum();
        writeln!(
            err,
            "{} files read, {} in {} groups of copies, {} could not be read",
            ids.len(),
            in_groups,
            groups.len(),
            files.len() - ids.len() + walk_errors.len()
        )?;
        self.out.flush()
    }
}
