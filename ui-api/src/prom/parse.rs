//! User PromQL parsed by `promql-parser`, bounded: length, bracket depth and operator
//! count are checked before parsing (the parser recurses per level and is quadratic in
//! flat operator chains), a parser panic is a 400. The `query` parameter is parsed on a
//! large-stack thread; `match[]` selectors, which cannot nest, are refused past one level
//! of brackets before the parser sees them.

use promql_parser::parser::{self, Expr, VectorSelector};

use super::error::PromError;
use super::eval;
use super::params::PromParams;

/// Stack for parsing a query: the parser, the depth check and dropping a refused tree
/// recurse once per nesting level, and a 64 KiB query can nest thirty thousand deep.
pub const PARSE_STACK_BYTES: usize = 256 << 20;

/// A query's text within bounds: length, nesting and operators checked first, a parser
/// panic (e.g. an out-of-range duration) a bad query, the tree's depth checked after.
/// Recurses once per nesting level: run it on a thread with a large stack.
pub fn parse_query_text(q: &str) -> Result<Expr, PromError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(PromError::bad("query longer than 64 KiB"));
    }
    precheck(q)?;
    let expr = std::panic::catch_unwind(|| parser::parse(q))
        .map_err(|_| PromError::bad("invalid query: the parser rejected it"))?
        .map_err(|e| PromError::bad(format!("invalid query: {e}")))?;
    if eval::depth(&expr) > eval::MAX_DEPTH {
        return Err(PromError::bad(format!(
            "query nests deeper than {} levels",
            eval::MAX_DEPTH
        )));
    }
    Ok(expr)
}

fn parse_bounded(q: String) -> Result<Expr, PromError> {
    let parse = move || parse_query_text(&q);
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

/// Bracket depth and operator count outside string literals, read without parsing.
struct Shape {
    depth: usize,
    operators: usize,
}

fn shape(q: &str) -> Shape {
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
    Shape {
        depth: deepest,
        operators: ops,
    }
}

/// A cheap bound checked before parsing a query.
fn precheck(q: &str) -> Result<(), PromError> {
    let Shape {
        depth: deepest,
        operators: ops,
    } = shape(q);
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

/// Longest query or selector accepted.
const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Most `match[]` selectors one request may carry.
pub const MAX_SELECTORS: usize = 256;

/// The `query` parameter, parsed within bounds.
pub async fn parse_query(p: &PromParams) -> Result<Expr, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| PromError::bad("missing query parameter"))?;
    if q.len() > MAX_QUERY_BYTES {
        return Err(PromError::bad("query longer than 64 KiB"));
    }
    precheck(q)?;
    let q = q.to_string();
    tokio::task::spawn_blocking(move || parse_bounded(q))
        .await
        .map_err(|e| PromError::internal(format!("parsing: {e}")))?
}

/// One `match[]` value: a series selector (`name{label="value", …}`), which has one level of
/// braces at most; anything deeper or longer is refused before parsing, so the parser's
/// recursion stays shallow on the calling thread.
pub fn parse_selector(m: &str) -> Result<VectorSelector, PromError> {
    let refuse = |why: &str| {
        PromError::bad(format!(
            "invalid match[] {:?}: {why}",
            crate::params::clip(m)
        ))
    };
    if m.len() > MAX_QUERY_BYTES {
        return Err(refuse("longer than 64 KiB"));
    }
    let shape = shape(m);
    if shape.depth > 1 || shape.operators > MAX_OPERATORS {
        return Err(refuse("must be a series selector"));
    }
    match std::panic::catch_unwind(|| parser::parse(m)) {
        Ok(Ok(Expr::VectorSelector(vs))) => Ok(vs),
        Ok(Ok(_)) => Err(refuse("must be a series selector")),
        Ok(Err(e)) => Err(refuse(&e.to_string())),
        Err(_) => Err(refuse("the parser rejected it")),
    }
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

    #[test]
    fn match_selectors_cannot_nest() {
        assert!(parse_selector(r#"x{a="((((", b=~"}}}.*"}"#).is_ok());
        assert!(parse_selector("x").is_ok());
        let deep = format!("{}x{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            parse_selector(&deep).err().map(|e| e.status),
            Some(axum::http::StatusCode::BAD_REQUEST)
        );
        assert!(parse_selector("(x)").is_err());
        assert!(parse_selector("sum(x)").is_err());
        assert!(parse_selector(&"x".repeat(70_000)).is_err());
        // A flat operator chain has no brackets but would make the parser quadratic.
        assert!(parse_selector(&format!("x{}", "+x".repeat(20_000))).is_err());
        assert!(parse_selector(r#"x{a="1",b!="2",c=~"3",d!~"4"}"#).is_ok());
    }
}
