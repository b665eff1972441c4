//! `Upload-Metadata`: comma-separated `key base64(value)` pairs (tus 1.0.0, creation).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata pair {0:?} is not 'key base64value'")]
    Malformed(String),
    #[error(
        "metadata key {0:?} is empty or holds spaces, commas, control characters or non-ASCII"
    )]
    BadKey(String),
    #[error("metadata value for {0:?} is not valid base64")]
    NotBase64(String),
    #[error("metadata value for {0:?} is not base64 of UTF-8 text{hint}", hint = if *.1 { " (it looks like raw hex: encode the text itself as base64)" } else { "" })]
    NotUtf8(String, bool),
    #[error("metadata key {0:?} appears twice")]
    Duplicate(String),
}

/// Parsed `Upload-Metadata`: keys to UTF-8 values. Keys must be unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(pub BTreeMap<String, String>);

impl Metadata {
    pub fn parse(header: &str) -> Result<Metadata, MetadataError> {
        let mut map = BTreeMap::new();
        for pair in header
            .split(',')
            .map(crate::headers::trim_ows)
            .filter(|p| !p.is_empty())
        {
            let mut parts = pair.split(' ');
            let key = parts.next().unwrap_or_default();
            let value = parts.next();
            if parts.next().is_some() {
                return Err(MetadataError::Malformed(pair.to_owned()));
            }
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(MetadataError::BadKey(key.to_owned()));
            }
            let value = match value {
                None | Some("") => String::new(),
                Some(v) => {
                    let raw = STANDARD
                        .decode(v)
                        .map_err(|_| MetadataError::NotBase64(key.to_owned()))?;
                    String::from_utf8(raw).map_err(|_| {
                        let hex = v.bytes().all(|b| b.is_ascii_hexdigit());
                        MetadataError::NotUtf8(key.to_owned(), hex)
                    })?
                }
            };
            if map.insert(key.to_owned(), value).is_some() {
                return Err(MetadataError::Duplicate(key.to_owned()));
            }
        }
        Ok(Metadata(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// The header form, keys in sorted order.
    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k} {}", STANDARD.encode(v))
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut m = Metadata::default();
        m.insert("filename", "été.jpg");
        m.insert("digest", "ab12");
        m.insert("flag", "");
        let parsed = Metadata::parse(&m.encode()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.get("filename"), Some("été.jpg"));
    }

    #[test]
    fn parses_what_tus_clients_send() {
        // tus-js-client style, with spaces after commas
        let m = Metadata::parse("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==, is_confidential")
            .unwrap();
        assert_eq!(m.get("filename"), Some("world_domination_plan.pdf"));
        assert_eq!(m.get("is_confidential"), Some(""));
    }

    #[test]
    fn refuses_bad_metadata() {
        assert!(matches!(
            Metadata::parse("name !!!"),
            Err(MetadataError::NotBase64(_))
        ));
        assert!(matches!(
            Metadata::parse("a YQ== b"),
            Err(MetadataError::Malformed(_))
        ));
        assert!(matches!(
            Metadata::parse("a YQ==,a Yg=="),
            Err(MetadataError::Duplicate(_))
        ));
        assert!(matches!(
            Metadata::parse("a /w=="),
            Err(MetadataError::NotUtf8(_, false))
        ));
        // A BLAKE3 digest sent as hex where base64 is expected decodes, but not to text.
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let err = Metadata::parse(&format!("digest {hex}")).unwrap_err();
        assert!(err.to_string().contains("looks like raw hex"), "{err}");
        assert!(matches!(
            Metadata::parse("é YQ=="),
            Err(MetadataError::BadKey(_))
        ));
        // Found by fuzzing: any whitespace was trimmed, control characters were allowed in
        // keys, and a key with them did not survive encode and parse. Only spaces and tabs
        // around a pair are optional whitespace; a key is visible ASCII.
        assert!(matches!(
            Metadata::parse("\tk eA=="),
            Ok(m) if m.get("k") == Some("x")
        ));
        assert!(matches!(
            Metadata::parse("k\u{b} eA=="),
            Err(MetadataError::BadKey(_))
        ));
    }
}
