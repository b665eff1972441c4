//! Property-based fuzzing of the parsers that take untrusted input from clients, on stable Rust
//! with proptest: the tus header parsers (`parse_number`, `is_offset_content_type`,
//! `ChecksumHeader`), `Upload-Metadata`, detection bodies and identifiers.
//!
//! Each parser gets one [`TestRunner`] over a strategy that mixes
//! - arbitrary text and bytes: control characters, non-ASCII, invalid UTF-8 (for JSON), up to
//!   4 KB long;
//! - near-valid inputs: valid ones truncated, with a character inserted, deleted or replaced,
//!   letter case swapped, spaces or commas added, a piece duplicated; and per parser a
//!   duplicated metadata key, hex where base64 is expected, a wrong checksum length;
//! - valid inputs, which must be accepted and round-trip.
//!
//! Every input must be parsed without a panic (proptest turns a panic into a failure), and
//! whatever is accepted must survive encode → parse unchanged. A failure carries the smallest
//! input proptest shrank it to.
//!
//! [`run`] is called by this module's unit test (few cases) and by
//! `cargo bench -p photosync-bench --bench fuzz` (many).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::time::{Duration, Instant};

use photosync_identify::{Identifier, ParseIdentifierError, VERSION};
use photosync_protocol::{
    from_json, is_offset_content_type, parse_number, parse_range, to_json, tus, ChecksumAlgorithm,
    ChecksumHeader, DetectQuery, DetectRequest, HeaderError, Metadata, MetadataError, RangeError,
    DETECT_MAX_BATCH,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// What one parser made of its cases.
#[derive(Debug, Clone)]
pub struct ParserReport {
    pub parser: &'static str,
    /// Inputs tried (with a failure, this includes the shrinking steps).
    pub cases: u64,
    /// Inputs the parser accepted (for detection bodies: the whole request, as the server
    /// would, digests and identifiers included).
    pub accepted: u64,
    pub refused: u64,
    pub elapsed: Duration,
    /// Why a property failed, with the minimal failing input; `None` when all held.
    pub failure: Option<String>,
}

impl ParserReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The seed [`run`] uses unless `PHOTOSYNC_FUZZ_SEED` gives another (a decimal u64).
pub const DEFAULT_SEED: u64 = 0x5eed_f00d_2024_1204;

/// Fuzzes every parser with `cases` inputs each, seeded with `PHOTOSYNC_FUZZ_SEED` or
/// [`DEFAULT_SEED`], so a run can be repeated exactly.
pub fn run(cases: u32) -> Vec<ParserReport> {
    let seed = std::env::var("PHOTOSYNC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_SEED);
    run_seeded(cases, seed)
}

/// [`run`] with an explicit seed.
pub fn run_seeded(cases: u32, seed: u64) -> Vec<ParserReport> {
    vec![
        fuzz("parse_number", cases, seed, number_case(), check_number),
        fuzz(
            "is_offset_content_type",
            cases,
            seed,
            content_type_case(),
            check_content_type,
        ),
        fuzz(
            "ChecksumHeader::parse",
            cases,
            seed,
            checksum_case(),
            check_checksum,
        ),
        fuzz(
            "Metadata::parse",
            cases,
            seed,
            metadata_case(),
            check_metadata,
        ),
        fuzz(
            "from_json::<DetectRequest>",
            cases,
            seed,
            detect_case(),
            check_detect,
        ),
        fuzz(
            "Identifier::from_str",
            cases,
            seed,
            identifier_case(),
            check_identifier,
        ),
        fuzz("parse_range", cases, seed, range_case(), check_range),
    ]
}

// ---------------------------------------------------------------------------------------------
// Range of downloads.

/// A `Range` header value and the length of the content it asks of.
fn range_case() -> BoxedStrategy<(String, u64)> {
    let len = prop_oneof![Just(0u64), 1u64..64, interesting_u64()];
    let number = prop_oneof![
        Just(String::new()),
        interesting_u64().prop_map(|n| n.to_string()),
        (0u64..100).prop_map(|n| n.to_string()),
    ];
    let spec = (number.clone(), number, ows(), ows())
        .prop_map(|(a, b, pre, post)| format!("{pre}bytes={a}-{b}{post}"));
    (
        prop_oneof![
            3 => spec.clone(),
            2 => mutated(spec),
            1 => noise(),
            1 => from_alphabet("bytes=0123456789-, ", 0..40),
        ],
        len,
    )
        .boxed()
}

/// A range served lies within the content; a refusal means no byte of it could.
fn check_range((text, len): (String, u64)) -> Result<bool, TestCaseError> {
    match parse_range(&text, len) {
        Ok(Some(r)) => {
            prop_assert!(
                r.start <= r.end && r.end < len,
                "parse_range({:?}, {}) = {:?}",
                text,
                len,
                r
            );
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(RangeError::Unsatisfiable(n)) => {
            prop_assert_eq!(n, len);
            Ok(false)
        }
    }
}

/// Runs `check` on `cases` inputs from `strategy`. `check` returns whether the parser accepted
/// the input, or the property that failed.
fn fuzz<S: Strategy>(
    parser: &'static str,
    cases: u32,
    seed: u64,
    strategy: S,
    check: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) -> ParserReport {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    // Each parser its own stream: the seed, then the parser's name.
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    for (b, n) in bytes[8..].iter_mut().zip(parser.bytes()) {
        *b = n;
    }
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let accepted = Cell::new(0u64);
    let refused = Cell::new(0u64);
    let start = Instant::now();
    let result = runner.run(&strategy, |input| {
        let count = if check(input)? { &accepted } else { &refused };
        count.set(count.get() + 1);
        Ok(())
    });
    let elapsed = start.elapsed();
    ParserReport {
        parser,
        cases: accepted.get() + refused.get(),
        accepted: accepted.get(),
        refused: refused.get(),
        elapsed,
        failure: result.err().map(|e| format!("{parser} (seed {seed}): {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs shared by all parsers.

/// Characters that mean something to one of the parsers or to HTTP, and a few look-alikes.
const SPECIAL: &[char] = &[
    ' ',
    ',',
    ';',
    '=',
    ':',
    '+',
    '-',
    '/',
    '_',
    '.',
    '\t',
    '\n',
    '\r',
    '\0',
    '\u{b}',
    '\u{c}',
    '"',
    '\\',
    '{',
    '}',
    '[',
    ']',
    'é',
    '\u{a0}',
    '\u{85}',
    '\u{2028}',
    '\u{3000}',
    '\u{feff}',
    '٣',
    '０',
    'ſ',
    'K',
    'İ',
    '\u{1F4F7}',
];

fn any_char() -> BoxedStrategy<char> {
    prop_oneof![
        4 => (0x20u8..0x7f).prop_map(char::from),
        1 => (0u8..0x80).prop_map(char::from),
        1 => select(SPECIAL),
        1 => any::<char>(),
    ]
    .boxed()
}

fn text_of(
    chars: impl Strategy<Value = char> + 'static,
    len: Range<usize>,
) -> BoxedStrategy<String> {
    vec(chars, len)
        .prop_map(|c| c.into_iter().collect())
        .boxed()
}

/// Random text from `alphabet`: garbage that gets past the first checks of a parser.
fn from_alphabet(alphabet: &'static str, len: Range<usize>) -> BoxedStrategy<String> {
    text_of(select(alphabet.chars().collect::<Vec<_>>()), len)
}

/// Arbitrary text: mostly short, sometimes up to 4 KB, sometimes decoded from random bytes.
fn noise() -> BoxedStrategy<String> {
    prop_oneof![
        6 => text_of(any_char(), 0..48),
        1 => text_of(any_char(), 0..4096),
        1 => vec(any::<u8>(), 0..4096).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// One change to a valid input.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(Index),
    Delete(Index),
    Insert(Index, char),
    Replace(Index, char),
    SwapCase(Index),
    SwapAllCase,
    Spaces(Index, usize),
    Comma(Index),
    /// Repeats the text between the two positions.
    Duplicate(Index, Index),
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), any_char()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<Index>(), any_char()).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<Index>().prop_map(Edit::SwapCase),
        Just(Edit::SwapAllCase),
        (any::<Index>(), 1usize..4).prop_map(|(i, n)| Edit::Spaces(i, n)),
        any::<Index>().prop_map(Edit::Comma),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Duplicate(a, b)),
    ]
    .boxed()
}

fn swap_case(c: char) -> char {
    if c.is_ascii_lowercase() {
        c.to_ascii_uppercase()
    } else {
        c.to_ascii_lowercase()
    }
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut c: Vec<char> = text.chars().collect();
    for e in edits {
        let n = c.len();
        // A position between characters, 0..=n; a character, if there is one.
        let gap = |i: &Index| i.index(n + 1);
        let at = |i: &Index| (n > 0).then(|| i.index(n));
        match e {
            Edit::Truncate(i) => c.truncate(gap(i)),
            Edit::Delete(i) => {
                if let Some(k) = at(i) {
                    c.remove(k);
                }
            }
            Edit::Insert(i, ch) => c.insert(gap(i), *ch),
            Edit::Replace(i, ch) => {
                if let Some(k) = at(i) {
                    c[k] = *ch;
                }
            }
            Edit::SwapCase(i) => {
                if let Some(k) = at(i) {
                    c[k] = swap_case(c[k]);
                }
            }
            Edit::SwapAllCase => c.iter_mut().for_each(|ch| *ch = swap_case(*ch)),
            Edit::Spaces(i, k) => {
                let p = gap(i);
                c.splice(p..p, std::iter::repeat_n(' ', *k));
            }
            Edit::Comma(i) => c.insert(gap(i), ','),
            Edit::Duplicate(a, b) => {
                let (x, y) = (gap(a), gap(b));
                let (lo, hi) = (x.min(y), x.max(y));
                let piece = c[lo..hi].to_vec();
                c.splice(hi..hi, piece);
            }
        }
    }
    c.into_iter().collect()
}

/// Valid inputs with one to three edits.
fn mutated(valid: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    (valid, vec(edit(), 1..4))
        .prop_map(|(s, e)| apply(&s, &e))
        .boxed()
}

/// `text` with each ASCII letter's case chosen at random.
fn case_variant(text: &'static str) -> BoxedStrategy<String> {
    case_variant_owned(text.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Optional whitespace, as HTTP allows around a header value.
fn ows() -> BoxedStrategy<&'static str> {
    select(vec!["", "", " ", "\t", "  ", " \t "]).boxed()
}

// ---------------------------------------------------------------------------------------------
// Upload-Offset, Upload-Length, Content-Length.

#[derive(Debug, Clone)]
enum NumberCase {
    /// The decimal form of `n`, perhaps with leading zeros and surrounding whitespace.
    Valid {
        n: u64,
        text: String,
    },
    Any(String),
}

fn interesting_u64() -> BoxedStrategy<u64> {
    let max = i64::MAX as u64;
    prop_oneof![
        any::<u64>(),
        0..1000u64,
        (max - 16)..=(max + 16),
        Just(u64::MAX),
    ]
    .boxed()
}

fn number_case() -> BoxedStrategy<NumberCase> {
    let valid = (interesting_u64(), 0usize..4, ows(), ows()).prop_map(|(n, zeros, pre, post)| {
        let zeros = "0".repeat(zeros);
        NumberCase::Valid {
            n,
            text: format!("{pre}{zeros}{n}{post}"),
        }
    });
    prop_oneof![
        3 => valid,
        3 => mutated(interesting_u64().prop_map(|n| n.to_string())).prop_map(NumberCase::Any),
        2 => noise().prop_map(NumberCase::Any),
        1 => from_alphabet("0123456789 +-.,eEx_\t", 0..32).prop_map(NumberCase::Any),
        1 => from_alphabet("0000000000123456789", 0..4096).prop_map(NumberCase::Any),
    ]
    .boxed()
}

/// Optional whitespace in HTTP: spaces and tabs only (RFC 9110).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// What `parse_number` should make of `text`: `Err(true)` for a number too large, `Err(false)`
/// for not a number.
fn number_oracle(text: &str) -> Result<u64, bool> {
    let v = trim_ows(text);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(false);
    }
    let significant = v.trim_start_matches('0');
    if significant.len() > 19 {
        return Err(true);
    }
    let n = significant
        .bytes()
        .fold(0u128, |n, d| n * 10 + u128::from(d - b'0'));
    if n > i64::MAX as u128 {
        Err(true)
    } else {
        Ok(n as u64)
    }
}

fn check_number(case: NumberCase) -> Result<bool, TestCaseError> {
    let text = match &case {
        NumberCase::Valid { text, .. } | NumberCase::Any(text) => text,
    };
    let got = parse_number(text);
    if let NumberCase::Valid { n, .. } = case {
        let want = if n <= i64::MAX as u64 {
            Ok(n)
        } else {
            Err(HeaderError::TooLarge)
        };
        prop_assert_eq!(&got, &want, "parse_number({:?})", text);
    }
    let seen = match &got {
        Ok(n) => Ok(*n),
        Err(HeaderError::TooLarge) => Err(true),
        Err(HeaderError::NotANumber(_)) => Err(false),
        Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
    };
    prop_assert_eq!(
        seen,
        number_oracle(text),
        "parse_number({:?}) = {:?}",
        text,
        got
    );
    Ok(got.is_ok())
}

// ---------------------------------------------------------------------------------------------
// Content-Type of PATCH requests.

#[derive(Debug, Clone)]
enum ContentTypeCase {
    /// Must be accepted.
    Offset(String),
    /// Another media type: must be refused.
    Other(String),
    Any(String),
}

/// Media types near tus's, none of them tus's.
const OTHER_TYPES: &[&str] = &[
    "",
    "application/octet-stream",
    "application/offset+octet-streams",
    "application/offset+octet-strea",
    "application/offset+octet_stream",
    "application/offset octet-stream",
    "application/offset-octet-stream",
    "application/offset+octet-stream/",
    "application/offset+octet-stream,",
    "application/offset+octet-stream, application/offset+octet-stream",
    "application /offset+octet-stream",
    "application/ offset+octet-stream",
    "\"application/offset+octet-stream\"",
    "application/offset+octet-stream\0",
    "application/offset+octet-stream=",
    "application/offſet+octet-stream",
    "offset+octet-stream",
    "application",
    "application/*",
    "*/*",
    "application/json",
    "text/plain",
    "multipart/form-data",
];

/// `; name=value` parameters: whatever follows the first `;` does not change the type.
fn parameters() -> BoxedStrategy<String> {
    let name = prop_oneof![
        Just("charset".to_owned()),
        from_alphabet("abcdefghijklmnopqrstuvwxyz-", 1..12),
    ];
    let value = prop_oneof![
        Just("binary".to_owned()),
        Just("\"quoted; value\"".to_owned()),
        noise(),
    ];
    vec((ows(), name, value), 0..3)
        .prop_map(|ps| {
            ps.into_iter()
                .map(|(sp, name, value)| format!(";{sp}{name}={value}"))
                .collect()
        })
        .boxed()
}

fn content_type_case() -> BoxedStrategy<ContentTypeCase> {
    let offset = || case_variant(tus::OFFSET_CONTENT_TYPE);
    let valid = (ows(), offset(), ows(), parameters())
        .prop_map(|(pre, t, post, ps)| ContentTypeCase::Offset(format!("{pre}{t}{post}{ps}")));
    let other = (
        select(OTHER_TYPES),
        vec(any::<bool>(), 64),
        ows(),
        parameters(),
    )
        .prop_map(|(t, flip, sp, ps)| {
            let t: String = t
                .chars()
                .zip(flip.into_iter().chain(std::iter::repeat(false)))
                .map(|(c, f)| if f { swap_case(c) } else { c })
                .collect();
            ContentTypeCase::Other(format!("{sp}{t}{sp}{ps}"))
        });
    prop_oneof![
        3 => valid,
        2 => other,
        3 => mutated(offset().prop_map(|t| t + "; charset=binary")).prop_map(ContentTypeCase::Any),
        2 => noise().prop_map(ContentTypeCase::Any),
    ]
    .boxed()
}

fn check_content_type(case: ContentTypeCase) -> Result<bool, TestCaseError> {
    let got = match &case {
        ContentTypeCase::Offset(t) => {
            let got = is_offset_content_type(t);
            prop_assert!(got, "is_offset_content_type({:?}) refused tus's type", t);
            got
        }
        ContentTypeCase::Other(t) => {
            let got = is_offset_content_type(t);
            prop_assert!(
                !got,
                "is_offset_content_type({:?}) accepted another type",
                t
            );
            got
        }
        ContentTypeCase::Any(t) => {
            let got = is_offset_content_type(t);
            // The type is what comes before the first `;`, without the spaces and tabs around it,
            // in any letter case.
            let media = trim_ows(t.split_once(';').map_or(t.as_str(), |(m, _)| m));
            let want = media.to_ascii_lowercase() == tus::OFFSET_CONTENT_TYPE;
            prop_assert_eq!(got, want, "is_offset_content_type({:?})", t);
            got
        }
    };
    Ok(got)
}

// ---------------------------------------------------------------------------------------------
// Upload-Checksum.

#[derive(Debug, Clone)]
enum ChecksumCase {
    /// A digest of the right length: its encoding must parse back equal.
    Valid(ChecksumHeader, &'static str, &'static str),
    /// A digest of the wrong length, base64: must be refused, for its length unless empty.
    WrongLength(ChecksumAlgorithm, Vec<u8>),
    /// A digest of the right length written in hex (either case): refused, hinting at hex.
    Hex(ChecksumAlgorithm, String),
    Any(String),
}

fn algorithm() -> BoxedStrategy<ChecksumAlgorithm> {
    select(ChecksumAlgorithm::ALL.to_vec()).boxed()
}

fn checksum_header() -> BoxedStrategy<ChecksumHeader> {
    algorithm()
        .prop_flat_map(|algorithm| {
            vec(any::<u8>(), algorithm.digest_len()).prop_map(move |expected| ChecksumHeader {
                algorithm,
                expected,
            })
        })
        .boxed()
}

fn checksum_case() -> BoxedStrategy<ChecksumCase> {
    let valid =
        (checksum_header(), ows(), ows()).prop_map(|(h, a, b)| ChecksumCase::Valid(h, a, b));
    let wrong = (algorithm(), vec(any::<u8>(), 0..80))
        .prop_filter("a wrong length", |(a, d)| d.len() != a.digest_len())
        .prop_map(|(a, d)| ChecksumCase::WrongLength(a, d));
    let hexed = checksum_header().prop_flat_map(|h| {
        case_variant_owned(hex(&h.expected)).prop_map(move |x| ChecksumCase::Hex(h.algorithm, x))
    });
    let names = "sha1sha256blake3SHA1 =+/AZaz09";
    prop_oneof![
        3 => valid,
        1 => wrong,
        1 => hexed,
        3 => mutated(checksum_header().prop_map(|h| h.encode())).prop_map(ChecksumCase::Any),
        1 => from_alphabet(names, 0..64).prop_map(ChecksumCase::Any),
        2 => noise().prop_map(ChecksumCase::Any),
    ]
    .boxed()
}

/// `text` with each ASCII letter's case chosen at random.
fn case_variant_owned(text: String) -> BoxedStrategy<String> {
    vec(any::<bool>(), text.len())
        .prop_map(move |flip| {
            text.chars()
                .zip(flip)
                .map(|(c, f)| if f { swap_case(c) } else { c })
                .collect()
        })
        .boxed()
}

fn check_checksum(case: ChecksumCase) -> Result<bool, TestCaseError> {
    let text = match &case {
        ChecksumCase::Valid(h, pre, post) => format!("{pre}{}{post}", h.encode()),
        ChecksumCase::WrongLength(a, d) => ChecksumHeader {
            algorithm: *a,
            expected: d.clone(),
        }
        .encode(),
        ChecksumCase::Hex(a, x) => format!("{a} {x}"),
        ChecksumCase::Any(t) => t.clone(),
    };
    let got = ChecksumHeader::parse(&text);
    match &case {
        ChecksumCase::Valid(h, ..) => {
            prop_assert_eq!(got.as_ref(), Ok(h), "ChecksumHeader::parse({:?})", text);
        }
        ChecksumCase::WrongLength(a, d) => prop_assert!(
            match &got {
                // An empty digest encodes as `sha1 `, which is no pair at all.
                Err(HeaderError::MalformedChecksum) => d.is_empty(),
                Err(HeaderError::ChecksumLength {
                    algorithm,
                    want,
                    got,
                    ..
                }) => algorithm == a && *want == a.digest_len() && *got == d.len(),
                _ => false,
            },
            "ChecksumHeader::parse({:?}) = {:?}, want a length error",
            text,
            got
        ),
        ChecksumCase::Hex(..) => prop_assert!(
            matches!(got, Err(HeaderError::ChecksumLength { hex: true, .. })),
            "ChecksumHeader::parse({:?}) = {:?}, want a length error that names hex",
            text,
            got
        ),
        ChecksumCase::Any(_) => {}
    }
    if let Ok(h) = &got {
        prop_assert_eq!(h.expected.len(), h.algorithm.digest_len());
        let name = format!("{} ", h.algorithm);
        prop_assert!(
            trim_ows(&text).starts_with(&name),
            "ChecksumHeader::parse({:?}) = {:?}",
            text,
            h
        );
        let again = ChecksumHeader::parse(&h.encode());
        prop_assert_eq!(again.as_ref(), Ok(h), "re-parsing {:?}", h.encode());
    }
    Ok(got.is_ok())
}

// ---------------------------------------------------------------------------------------------
// Upload-Metadata.

#[derive(Debug, Clone)]
enum MetadataCase {
    /// Built with `insert`: `encode` must parse back equal.
    Valid(BTreeMap<String, String>),
    /// The same pairs written as a tus client may: in any order, with spaces after commas,
    /// empty pairs, and a key with no value as `key` alone.
    Loose(Vec<(String, String)>, Vec<&'static str>),
    /// Valid, then one key again: refused as a duplicate.
    Duplicate(BTreeMap<String, String>, Index, String),
    /// A value in hex where base64 is expected.
    Hex(String, String),
    Any(String),
}

/// A key the parser's rules allow: not empty, no spaces, no commas, and ASCII (tus: keys
/// SHOULD be ASCII; the parser refuses others). Control characters included.
fn metadata_key() -> BoxedStrategy<String> {
    // Keys are visible ASCII (the parser refuses control characters and non-ASCII).
    let ascii = (0x21u8..0x7f).prop_map(char::from);
    prop_oneof![
        2 => select(vec!["filename", "digest", "identifier", "size", "mtime", "name", "filetype"])
            .prop_map(str::to_owned),
        3 => text_of(ascii, 1..16)
            .prop_map(|k| k.replace([' ', ','], "_")),
    ]
    .boxed()
}

fn metadata_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => text_of(any_char(), 0..40),
        1 => Just(String::new()),
        1 => text_of(any_char(), 0..2048),
    ]
    .boxed()
}

fn metadata_map() -> BoxedStrategy<BTreeMap<String, String>> {
    btree_map(metadata_key(), metadata_value(), 0..6).boxed()
}

fn metadata_of(pairs: &BTreeMap<String, String>) -> Metadata {
    let mut m = Metadata::default();
    for (k, v) in pairs {
        m.insert(k, v.as_str());
    }
    m
}

/// One pair as `encode` writes it.
fn encoded_pair(key: &str, value: &str) -> String {
    let mut m = Metadata::default();
    m.insert(key, value);
    m.encode()
}

fn metadata_case() -> BoxedStrategy<MetadataCase> {
    let loose = metadata_map()
        .prop_flat_map(|m| {
            let n = m.len();
            let pairs: Vec<_> = m.into_iter().collect();
            (
                Just(pairs).prop_shuffle(),
                vec(
                    select(vec![",", ", ", " ,", " , ", ",,", ",\t", ", ,"]),
                    n + 2,
                ),
            )
        })
        .prop_map(|(pairs, seps)| MetadataCase::Loose(pairs, seps));
    let duplicate = (metadata_map(), any::<Index>(), metadata_value())
        .prop_filter("a key to repeat", |(m, ..)| !m.is_empty())
        .prop_map(|(m, i, v)| MetadataCase::Duplicate(m, i, v));
    let hexed = (metadata_key(), vec(any::<u8>(), 0..48)).prop_flat_map(|(k, d)| {
        case_variant_owned(hex(&d)).prop_map(move |x| MetadataCase::Hex(k.clone(), x))
    });
    let encoded = || metadata_map().prop_map(|m| metadata_of(&m).encode());
    prop_oneof![
        3 => metadata_map().prop_map(MetadataCase::Valid),
        1 => loose,
        1 => duplicate,
        1 => hexed,
        3 => mutated(encoded()).prop_map(MetadataCase::Any),
        1 => from_alphabet("ab ,,=+/YQZ09", 0..64).prop_map(MetadataCase::Any),
        2 => noise().prop_map(MetadataCase::Any),
    ]
    .boxed()
}

fn check_metadata(case: MetadataCase) -> Result<bool, TestCaseError> {
    let text = match &case {
        MetadataCase::Valid(pairs) => metadata_of(pairs).encode(),
        MetadataCase::Loose(pairs, seps) => {
            let mut text = seps[0].to_owned();
            for ((k, v), sep) in pairs.iter().zip(&seps[1..]) {
                text += &encoded_pair(k, v);
                text += sep;
            }
            text
        }
        MetadataCase::Duplicate(pairs, i, v) => {
            let key = i.get(&pairs.keys().collect::<Vec<_>>()).as_str();
            format!("{},{}", metadata_of(pairs).encode(), encoded_pair(key, v))
        }
        MetadataCase::Hex(k, x) => format!("{k} {x}"),
        MetadataCase::Any(t) => t.clone(),
    };
    let got = Metadata::parse(&text);
    match &case {
        MetadataCase::Valid(pairs) => {
            let want = metadata_of(pairs);
            prop_assert_eq!(got.as_ref(), Ok(&want), "Metadata::parse({:?})", text);
            for (k, v) in pairs {
                prop_assert_eq!(want.get(k), Some(v.as_str()));
            }
        }
        MetadataCase::Loose(pairs, _) => {
            let want = metadata_of(&pairs.iter().cloned().collect());
            prop_assert_eq!(got.as_ref(), Ok(&want), "Metadata::parse({:?})", text);
        }
        MetadataCase::Duplicate(pairs, i, _) => {
            let key = i.get(&pairs.keys().collect::<Vec<_>>()).to_string();
            prop_assert_eq!(
                got.as_ref(),
                Err(&MetadataError::Duplicate(key)),
                "Metadata::parse({:?})",
                text
            );
        }
        MetadataCase::Hex(..) => prop_assert!(
            matches!(
                got,
                Ok(_)
                    | Err(MetadataError::NotBase64(_))
                    | Err(MetadataError::NotUtf8(_, true))
                    | Err(MetadataError::BadKey(_))
            ),
            "Metadata::parse({:?}) = {:?}",
            text,
            got
        ),
        MetadataCase::Any(_) => {}
    }
    if let Ok(m) = &got {
        let again = Metadata::parse(&m.encode());
        prop_assert_eq!(again.as_ref(), Ok(m), "re-parsing {:?}", m.encode());
    }
    Ok(got.is_ok())
}

// ---------------------------------------------------------------------------------------------
// Detection bodies and identifiers.

/// What the server asks of a digest.
fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 148 hex digits in mixed case: a valid identifier after `v2:` (the current `VERSION`).
fn identifier_hex() -> BoxedStrategy<String> {
    from_alphabet("0123456789abcdefABCDEF", 148..149)
}

fn identifier_text() -> BoxedStrategy<String> {
    identifier_hex()
        .prop_map(|h| format!("{VERSION}:{h}"))
        .boxed()
}

/// Parses `text` as the server does; checks that the result is right and round-trips.
fn check_identifier_text(text: &str) -> Result<bool, TestCaseError> {
    let got = text.parse::<Identifier>();
    let well_formed = text
        .strip_prefix(&format!("{VERSION}:"))
        .is_some_and(|h| h.len() == 148 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    prop_assert_eq!(
        got.is_ok(),
        well_formed,
        "{:?}.parse::<Identifier>() = {:?}",
        text,
        got
    );
    if let Ok(id) = got {
        let shown = id.to_string();
        prop_assert_eq!(&shown, &text.to_ascii_lowercase(), "Display of {:?}", text);
        prop_assert_eq!(
            shown.parse::<Identifier>(),
            Ok(id),
            "re-parsing {:?}",
            shown
        );
    }
    Ok(well_formed)
}

#[derive(Debug, Clone)]
enum IdentifierCase {
    Valid(String),
    Any(String),
}

fn identifier_case() -> BoxedStrategy<IdentifierCase> {
    let versions = (
        select(vec![
            "v1", "V1", "v2", "v0", "", "v", "v1:", "1", "v01", " v1",
        ]),
        select(vec![":", "", "::", ": ", ";"]),
        from_alphabet("0123456789abcdefABCDEFg", 146..151),
    )
        .prop_map(|(v, c, h)| IdentifierCase::Any(format!("{v}{c}{h}")));
    prop_oneof![
        3 => identifier_text().prop_map(IdentifierCase::Valid),
        3 => mutated(identifier_text()).prop_map(IdentifierCase::Any),
        1 => versions,
        2 => noise().prop_map(IdentifierCase::Any),
    ]
    .boxed()
}

fn check_identifier(case: IdentifierCase) -> Result<bool, TestCaseError> {
    match case {
        IdentifierCase::Valid(text) => {
            let accepted = check_identifier_text(&text)?;
            prop_assert!(accepted, "{:?} refused", text);
            Ok(accepted)
        }
        IdentifierCase::Any(text) => check_identifier_text(&text),
    }
}

#[derive(Debug, Clone)]
enum DetectCase {
    /// Serialised with serde_json: must parse back equal.
    Valid(DetectRequest),
    Bytes(Vec<u8>),
}

fn detect_query() -> BoxedStrategy<DetectQuery> {
    let digest = prop_oneof![
        4 => from_alphabet("0123456789abcdefABCDEF", 64..65),
        1 => noise(),
    ];
    let identifier = prop_oneof![
        2 => Just(None),
        3 => identifier_text().prop_map(Some),
        1 => mutated(identifier_text()).prop_map(Some),
        1 => noise().prop_map(Some),
    ];
    (digest, identifier)
        .prop_map(|(digest, identifier)| DetectQuery { digest, identifier })
        .boxed()
}

fn detect_request() -> BoxedStrategy<DetectRequest> {
    prop_oneof![
        4 => vec(detect_query(), 0..6),
        1 => vec(detect_query(), 0..64),
    ]
    .prop_map(|images| DetectRequest { images })
    .boxed()
}

/// JSON-ish tokens, for garbage that gets past the tokenizer.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\"images\"",
    "\"digest\"",
    "\"identifier\"",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "18446744073709551616",
    "\"v1:00\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"é\"",
    " ",
    "\n",
];

/// One change to bytes, which may leave them invalid UTF-8.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(Index),
    Insert(Index, u8),
    Replace(Index, u8),
}

fn apply_bytes(mut b: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        let n = b.len();
        match e {
            ByteEdit::Truncate(i) => b.truncate(i.index(n + 1)),
            ByteEdit::Insert(i, x) => b.insert(i.index(n + 1), *x),
            ByteEdit::Replace(i, x) => {
                if n > 0 {
                    b[i.index(n)] = *x;
                }
            }
        }
    }
    b
}

fn detect_case() -> BoxedStrategy<DetectCase> {
    let json = || detect_request().prop_map(|r| String::from_utf8_lossy(&to_json(&r)).into_owned());
    let byte_edit = prop_oneof![
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, x)| ByteEdit::Insert(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, x)| ByteEdit::Replace(i, x)),
    ];
    let byte_mutated = (json(), vec(byte_edit, 1..4))
        .prop_map(|(j, e)| DetectCase::Bytes(apply_bytes(j.into_bytes(), &e)));
    let tokens =
        vec(select(JSON_TOKENS), 0..64).prop_map(|t| DetectCase::Bytes(t.concat().into_bytes()));
    let nested = (
        1usize..2000,
        select(vec!["[", "{\"images\":", "{\"images\":[", "{\"a\":["]),
    )
        .prop_map(|(n, open)| DetectCase::Bytes(open.repeat(n).into_bytes()));
    prop_oneof![
        3 => detect_request().prop_map(DetectCase::Valid),
        3 => mutated(json()).prop_map(|s| DetectCase::Bytes(s.into_bytes())),
        1 => byte_mutated,
        1 => tokens,
        1 => nested,
        1 => vec(any::<u8>(), 0..4096).prop_map(DetectCase::Bytes),
        1 => noise().prop_map(|s| DetectCase::Bytes(s.into_bytes())),
    ]
    .boxed()
}

fn check_detect(case: DetectCase) -> Result<bool, TestCaseError> {
    let bytes = match &case {
        DetectCase::Valid(req) => to_json(req),
        DetectCase::Bytes(b) => b.clone(),
    };
    let got = from_json::<DetectRequest>(&bytes);
    if let DetectCase::Valid(req) = &case {
        prop_assert_eq!(
            got.as_ref().ok(),
            Some(req),
            "from_json({:?}) = {:?}",
            String::from_utf8_lossy(&bytes),
            got
        );
    }
    let Ok(req) = got else { return Ok(false) };
    let again = from_json::<DetectRequest>(&to_json(&req));
    prop_assert_eq!(again.as_ref().ok(), Some(&req), "re-parsing {:?}", req);
    // The server goes on to check each digest and parse each identifier.
    let mut accepted = req.images.len() <= DETECT_MAX_BATCH;
    for q in &req.images {
        accepted &= is_digest(&q.digest);
        if let Some(text) = &q.identifier {
            // Another version's identifier is answered by digest alone, not refused.
            let other_version = matches!(
                text.parse::<Identifier>(),
                Err(ParseIdentifierError::Version(_))
            );
            accepted &= check_identifier_text(text)? || other_version;
        }
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_all_parsers() {
        let reports = run(2_000);
        let failures: Vec<_> = reports
            .iter()
            .filter_map(|r| r.failure.as_deref())
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        for r in &reports {
            assert!(r.cases >= 2_000, "{r:?}");
            assert!(r.accepted > 0 && r.refused > 0, "{r:?}");
        }
    }
}
