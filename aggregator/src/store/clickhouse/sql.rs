//! SQL text for ClickHouse: quoted literals and checked identifiers. ClickHouse 18.16 has
//! no server-side query parameters, so every value is escaped here, once.

use crate::{Error, Result};

/// `s` as a ClickHouse string literal: single quotes, with `\` and `'` escaped and every
/// control byte written as `\xHH`. Any string round-trips through `SELECT <literal>`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A database or table name, checked (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes) and
/// backquoted.
pub fn ident(name: &str) -> Result<String> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(format!("`{name}`"))
    } else {
        Err(Error::Config(format!(
            "ClickHouse name {name:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 64 bytes)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_backslashes_and_control_bytes() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("a'b"), "'a\\'b'");
        assert_eq!(quote("a\\'"), "'a\\\\\\''");
        assert_eq!(quote("\n\0\u{7f}"), "'\\x0A\\x00\\x7F'");
        assert_eq!(quote("ñ😀"), "'ñ😀'");
    }

    #[test]
    fn identifiers_are_checked() {
        assert_eq!(ident("meshscope").ok().as_deref(), Some("`meshscope`"));
        assert_eq!(ident("_a1").ok().as_deref(), Some("`_a1`"));
        for bad in ["", "1a", "a-b", "a`b", "a b", "x; DROP", &"a".repeat(65)] {
            assert!(ident(bad).is_err(), "{bad}");
        }
    }
}
