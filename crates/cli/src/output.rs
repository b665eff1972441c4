//! How results are printed: tab-separated text for people and `cut`, or one JSON object per
//! line for programs.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use photosync_identify::{group, Distance, IdentifyError, Identity, Match};
use photosync_walk::WalkError;
use serde::Serialize;

pub struct Output {
    json: bool,
    out: BufWriter<io::Stdout>,
}

#[derive(Serialize)]
struct IdentityLine<'a> {
    path: String,
    identifier: String,
    digest: String,
    width: u32,
    height: u32,
    format: &'a str,
    bytes: u64,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    path: String,
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
    path: String,
    /// "best" for the copy with the most pixels, else "same_bytes" or "same_picture".
    relation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched: Option<String>,
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

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn relation_name(m: Option<&Match>) -> &'static str {
    match m {
        None => "best",
        Some(Match::SameBytes) => "same_bytes",
        Some(Match::SamePicture(_)) => "same_picture",
        Some(Match::Different(_)) => "different",
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
                path: shown(path),
                error: code,
                reason: reason.to_string(),
            };
            serde_json::to_writer(&mut self.out, &line)?;
            writeln!(self.out)
        } else {
            writeln!(self.out, "{}\terror: {reason}", shown(path))
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
                        path: shown(path),
                        identifier: id.identifier.to_string(),
                        digest: id.digest.to_string(),
                        width: id.width,
                        height: id.height,
                        format: id.format.name(),
                        bytes: id.bytes,
                    };
                    serde_json::to_writer(&mut self.out, &line)?;
                    writeln!(self.out)?;
                }
                Ok(id) => writeln!(
                    self.out,
                    "{}\t{}\t{}\t{}x{}\t{}",
                    shown(path),
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
            writeln!(err, "{}\terror: {e}", shown(&e.path))?;
        }
        let mut ok_paths = Vec::new();
        let mut ids = Vec::new();
        for (path, result) in files.iter().zip(results) {
            match result {
                Ok(id) => {
                    ok_paths.push(path);
                    ids.push(id.clone());
                }
                Err(e) => writeln!(err, "{}\terror: {e}", shown(path))?,
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
                        MemberJson {
                            path: shown(ok_paths[m.index]),
                            relation: relation_name(m.relation.as_ref()),
                            matched: m.relation.map(|_| shown(ok_paths[m.matched])),
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
                    Some(Match::SamePicture(d) | Match::Different(d)) => {
                        format!("same picture, distance {d}")
                    }
                };
                let via = if m.relation.is_some() && m.matched != g.members[0].index {
                    format!(" (as {})", shown(ok_paths[m.matched]))
                } else {
                    String::new()
                };
                writeln!(
                    self.out,
                    "  {}\t{}x{}\t{relation}{via}",
                    shown(ok_paths[m.index]),
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
