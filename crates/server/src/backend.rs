//! Which metadata store and blob store a server uses, as given on the command line:
//! `--database sqlite:PATH | postgres://...` and `--blobs file:DIR`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::s3::S3Config;

/// Where users, uploads and image records live.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded default: one file, one server.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string, shared by any number of instances.
    Postgres(String),
}

/// Where the bytes of uploads and photos live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobStore {
    /// A local folder (`uploads/`, `blobs/`, `thumbs/` below it).
    File(PathBuf),
    /// An S3-compatible bucket, shared by any number of instances.
    S3(S3Config),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("{0} names no database: use sqlite:PATH or postgres://USER@HOST/DATABASE")]
    Database(String),
    #[error("{0:?} names no blob store: use file:DIR or s3://BUCKET/PREFIX")]
    Blobs(String),
}

impl FromStr for Database {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, BackendError> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(BackendError::Database(format!("{s:?}")));
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Database::Postgres(s.to_owned()));
        }
        Err(BackendError::Database(what_it_names(s)))
    }
}

/// How an unusable `--database` value is shown: by its scheme only, since it may hold a
/// password.
fn what_it_names(s: &str) -> String {
    match s.split_once("://") {
        Some((scheme, _)) => format!("a {scheme}:// address"),
        None if s.contains(':') => format!("{:?}...", s.split(':').next().unwrap_or("")),
        None => "a value without a scheme".to_owned(),
    }
}

impl FromStr for BlobStore {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, BackendError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BackendError::Blobs(s.to_owned()));
            }
            return Ok(BlobStore::S3(S3Config::new(bucket, prefix)));
        }
        match s.strip_prefix("file:") {
            Some(dir) if !dir.is_empty() => Ok(BlobStore::File(PathBuf::from(
                dir.strip_prefix("//").unwrap_or(dir),
            ))),
            _ => Err(BackendError::Blobs(s.to_owned())),
        }
    }
}

/// Shown in logs without the password a connection string may hold.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Database::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

impl fmt::Display for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobStore::File(dir) => write!(f, "file:{}", dir.display()),
            BlobStore::S3(c) => write!(f, "s3://{}/{}", c.bucket, c.prefix),
        }
    }
}

/// `postgres://user:secret@host/db?password=x` as `postgres://user:***@host/db?password=***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value settings: every password= value is masked.
        return url.split(' ').map(masked).collect::<Vec<_>>().join(" ");
    };
    // The user info ends at the last `@` (a password may hold `/` or `@`), unless that `@`
    // is in the query.
    let (user, after) = match rest.rsplit_once('@') {
        Some((user, host)) if !user.contains('?') => (Some(user), host),
        _ => (None, rest),
    };
    let mut shown = format!("{scheme}://");
    if let Some(user) = user {
        match user.split_once(':') {
            Some((name, _)) => shown.push_str(&format!("{name}:***@")),
            None => shown.push_str(&format!("{user}@")),
        }
    }
    let (place, query) = after
        .split_once('?')
        .map_or((after, None), |(p, q)| (p, Some(q)));
    shown.push_str(place);
    if let Some(query) = query {
        let params: Vec<String> = query.split('&').map(masked).collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// `password=x` as `password=***`; any other `key=value` as it is.
fn masked(kv: &str) -> String {
    match kv.split_once('=') {
        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
        _ => kv.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_named_by_scheme_and_bad_names_say_what_is_expected() {
        assert_eq!(
            "sqlite:/var/lib/p/photosync.db".parse(),
            Ok(Database::Sqlite("/var/lib/p/photosync.db".into()))
        );
        assert_eq!(
            "sqlite://rel/p.db".parse(),
            Ok(Database::Sqlite("rel/p.db".into()))
        );
        assert_eq!(
            "postgresql://u@h/db".parse(),
            Ok(Database::Postgres("postgresql://u@h/db".into()))
        );
        assert_eq!(
            "file:/srv/blobs".parse(),
            Ok(BlobStore::File("/srv/blobs".into()))
        );
        for bad in ["", "sqlite:", "mysql://x", "/plain/path"] {
            let e = bad.parse::<Database>().unwrap_err();
            assert!(e.to_string().contains("postgres://"), "{e}");
        }
        assert_eq!(
            "s3://photos/family/2024/".parse(),
            Ok(BlobStore::S3(S3Config::new("photos", "family/2024")))
        );
        assert_eq!(
            "s3://photos".parse(),
            Ok(BlobStore::S3(S3Config::new("photos", "")))
        );
        for bad in ["", "file:", "s4://b", "s3://", "s3:///prefix"] {
            assert!(bad.parse::<BlobStore>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_connection_string_is_shown_without_its_password() {
        let db: Database = "postgres://photos:s3cret@db.local:5432/photos?sslmode=disable"
            .parse()
            .unwrap();
        let shown = format!("{db} {db:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://photos:***@db.local:5432/photos"),
            "{shown}"
        );
        let plain: Database = "postgres://photos@db.local/photos".parse().unwrap();
        assert_eq!(plain.to_string(), "postgres://photos@db.local/photos");
        for secret in [
            "postgres://u:s3/cr3t@h/db",
            "postgres://u:s3@cr3t@h/db",
            "postgres://u@h/db?sslmode=disable&password=s3cr3t",
        ] {
            let db: Database = secret.parse().unwrap();
            let shown = db.to_string();
            assert!(!shown.contains("cr3t"), "{shown}");
            assert!(shown.contains("@h/db"), "{shown}");
        }
        assert_eq!(
            without_password("postgres://h/db?password=a@b"),
            "postgres://h/db?password=***"
        );
        assert_eq!(
            without_password("host=db password=hunter2 user=u"),
            "host=db password=*** user=u"
        );
        // A value that names no database is not echoed: it may hold a password.
        let e = "postgresql+asyncpg://u:hunter2@h/db"
            .parse::<Database>()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
