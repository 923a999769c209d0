//! The query parameter parsed by `promql-parser`, bounded: length, bracket depth and
//! operator count are checked before parsing (the parser recurses per level and is
//! quadratic in flat operator chains), the parse runs on a large-stack thread, and a parser
//! panic is a 400.

use promql_parser::parser::{self, Expr};

use super::error::PromError;
use super::eval;
use super::params::PromParams;

/// Stack for parsing a query: the parser, the depth check and dropping a refused tree
/// recurse once per nesting level, and a 64 KiB query can nest thirty thousand deep.
const PARSE_STACK_BYTES: usize = 256 << 20;

fn parse_bounded(q: String) -> Result<Expr, PromError> {
    let parse = move || {
        // A parser panic (e.g. an out-of-range duration) is a bad query, not a crash.
        let expr = std::panic::catch_unwind(|| parser::parse(&q))
            .map_err(|_| PromError::bad("invalid query: the parser rejected it"))?
            .map_err(|e| PromError::bad(format!("invalid query: {e}")))?;
        if eval::depth(&expr) > eval::MAX_DEPTH {
            return Err(PromError::bad(format!(
                "query nests deeper than {} levels",
                eval::MAX_DEPTH
            )));
        }
        Ok(expr)
    };
    std::thread::Builder::new()
        .name("promql-parse".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(parse)
        .map_err(|e| PromError::internal(format!("starting the parser: {e}")))?
        .join()
        .map_err(|_| PromError::bad("invalid query: the parser rejected it"))?
}

/// Most operators (outside string literals) a query may hold: the parser's time grows
/// with the square of a flat operator chain (thirty thousand `+1` take twenty seconds).
const MAX_OPERATORS: usize = 500;

/// A cheap bound checked before parsing: bracket depth and operator count outside string
/// literals.
fn precheck(q: &str) -> Result<(), PromError> {
    let (mut depth, mut deepest, mut ops) = (0usize, 0usize, 0usize);
    let mut word = String::new();
    let mut chars = q.chars();
    let keyword = |w: &mut String, ops: &mut usize| {
        if matches!(
            w.to_ascii_lowercase().as_str(),
            "and" | "or" | "unless" | "atan2"
        ) {
            *ops += 1;
        }
        w.clear();
    };
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        keyword(&mut word, &mut ops);
        match c {
            '"' | '\'' | '`' => {
                // Skip the literal; `\` escapes in the quoted forms.
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => ops += 1,
            _ => {}
        }
    }
    keyword(&mut word, &mut ops);
    if deepest > eval::MAX_DEPTH {
        return Err(PromError::bad(format!(
            "query nests deeper than {} levels",
            eval::MAX_DEPTH
        )));
    }
    if ops > MAX_OPERATORS {
        return Err(PromError::bad(format!(
            "query has more than {MAX_OPERATORS} operators"
        )));
    }
    Ok(())
}

pub async fn parse_query(p: &PromParams) -> Result<Expr, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| PromError::bad("missing query parameter"))?;
    if q.len() > 64 * 1024 {
        return Err(PromError::bad("query longer than 64 KiB"));
    }
    precheck(q)?;
    let q = q.to_string();
    tokio::task::spawn_blocking(move || parse_bounded(q))
        .await
        .map_err(|e| PromError::internal(format!("parsing: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_too_deep_or_too_long_are_refused_before_parsing() {
        assert!(precheck(r#"sum by (a) (rate(x{a=~"(((((((", b!="+-*/"}[5m])) > 0"#).is_ok());
        assert!(precheck(&format!("{}1{}", "(".repeat(101), ")".repeat(101))).is_err());
        assert!(precheck(&"1+".repeat(501)).is_err());
        assert!(precheck(&"x or ".repeat(501)).is_err());
        assert!(precheck(&format!("x{{a=\"{}\"}}", "+".repeat(5000))).is_ok());
    }
}
