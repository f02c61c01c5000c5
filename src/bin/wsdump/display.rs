//! How received payloads are shown: text as is, binary decoded when it is
//! UTF-8 and as a hex dump with an ASCII column otherwise; gzip and zlib
//! payloads (found by their magic bytes) decompressed first.

use std::fmt::Write as _;
use std::io::Read;

/// The most bytes a hex dump shows; the rest is counted, not shown.
const HEX_LIMIT: usize = 512;
/// The most bytes a decompressed payload may grow to (a guard against bombs).
const INFLATE_LIMIT: u64 = 16 << 20;

/// A binary payload ready to print: its label and its body.
pub(crate) fn binary(data: &[u8]) -> (String, String) {
    match inflate(data) {
        Some((kind, plain)) => {
            let label = format!("binary ({kind} {} B -> {} B)", data.len(), plain.len());
            (label, body(&plain))
        }
        None => ("binary".to_string(), body(data)),
    }
}

/// Decoded text when `data` is UTF-8 without control characters (line breaks
/// and tabs aside), else a hex dump on the lines below.
fn body(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) if !text.chars().any(is_unsafe) => text.to_string(),
        _ => format!("{} bytes\n{}", data.len(), hex_dump(data)),
    }
}

/// Text for a terminal: control characters other than line breaks and tabs
/// (an escape sequence from the peer, say) are shown escaped, not obeyed.
pub(crate) fn text(t: &str) -> std::borrow::Cow<'_, str> {
    if !t.chars().any(is_unsafe) {
        return t.into();
    }
    t.chars()
        .map(|c| {
            if is_unsafe(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// `gzip` or `zlib` and the decompressed bytes, when `data` has the magic bytes
/// and decompresses within the limit.
fn inflate(data: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    let kind = match data {
        [0x1f, 0x8b, ..] => "gzip",
        // zlib: deflate (CM 8), window <= 32K, header checksum, no preset dictionary.
        [cmf, flg, ..]
            if cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
                && flg & 0x20 == 0 =>
        {
            "zlib"
        }
        _ => return None,
    };
    let mut plain = Vec::new();
    let read = if kind == "gzip" {
        flate2::read::MultiGzDecoder::new(data)
            .take(INFLATE_LIMIT + 1)
            .read_to_end(&mut plain)
    } else {
        flate2::read::ZlibDecoder::new(data)
            .take(INFLATE_LIMIT + 1)
            .read_to_end(&mut plain)
    };
    (read.is_ok() && plain.len() as u64 <= INFLATE_LIMIT).then_some((kind, plain))
}

/// `  0000  00 01 02 ...  |...|`, 16 bytes a line, up to [`HEX_LIMIT`] bytes.
pub(crate) fn hex_dump(data: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in data[..data.len().min(HEX_LIMIT)].chunks(16).enumerate() {
        let _ = write!(out, "  {:04x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    if data.len() > HEX_LIMIT {
        let _ = writeln!(out, "  ... {} more bytes", data.len() - HEX_LIMIT);
    }
    out.pop(); // the last newline: the caller ends the line
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn utf8_binary_is_shown_as_text() {
        assert_eq!(binary(b"hello"), ("binary".into(), "hello".into()));
    }

    #[test]
    fn control_characters_are_not_obeyed() {
        assert_eq!(text("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(text("\x1b[2Jgone"), "\\u{1b}[2Jgone");
        assert!(binary(&[1, 2, 3])
            .1
            .starts_with("3 bytes\n  0000  01 02 03"));
    }

    #[test]
    fn other_binary_is_a_hex_dump() {
        let (label, body) = binary(&[0, 1, 2, 0xff, b'A']);
        assert_eq!(label, "binary");
        assert_eq!(
            body,
            "5 bytes\n  0000  00 01 02 ff 41                                    |....A|"
        );
        let long = hex_dump(&[0u8; 600]);
        assert_eq!(long.lines().count(), HEX_LIMIT / 16 + 1);
        assert!(long.ends_with("... 88 more bytes"));
    }

    #[test]
    fn gzip_and_zlib_are_decompressed() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped text").unwrap();
        let gz = gz.finish().unwrap();
        let (label, body) = binary(&gz);
        assert!(label.starts_with("binary (gzip"), "{label}");
        assert_eq!(body, "zipped text");

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&[0xff; 40]).unwrap();
        let (label, body) = binary(&z.finish().unwrap());
        assert!(label.starts_with("binary (zlib"), "{label}");
        assert!(body.starts_with("40 bytes\n  0000  ff ff"), "{body}");

        // Magic bytes but not a stream: shown as it is.
        assert_eq!(binary(&[0x1f, 0x8b, 1]).0, "binary");
    }
}
