//! Tokens of the rules SQL.

use crate::SqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A name or a keyword; keywords are recognised by the parser, without case.
    Word(String),
    Str(String),
    Number(String),
    Symbol(&'static str),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub position: usize,
}

const SYMBOLS: [&str; 21] = [
    "<>", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", ".", "[", "]",
    "{", "}", ":",
];

pub fn tokenize(sql: &str) -> Result<Vec<Spanned>, SqlError> {
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (position, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(SqlError {
                            position,
                            message: "a string is not closed".into(),
                        })
                    }
                    // A doubled quote stands for itself.
                    Some((_, q)) if *q == c && chars.get(i + 1).map(|p| p.1) == Some(c) => {
                        text.push(c);
                        i += 2;
                    }
                    Some((_, q)) if *q == c => {
                        i += 1;
                        break;
                    }
                    Some((_, other)) => {
                        text.push(*other);
                        i += 1;
                    }
                }
            }
            tokens.push(Spanned {
                token: Token::Str(text),
                position,
            });
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                // `1.e` is not a number; a dot must be followed by a digit to belong to it.
                if chars[i].1 == '.' && !chars.get(i + 1).is_some_and(|n| n.1.is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
            if i < chars.len() && matches!(chars[i].1, 'e' | 'E') {
                let mut j = i + 1;
                if chars.get(j).is_some_and(|n| n.1 == '-' || n.1 == '+') {
                    j += 1;
                }
                if chars.get(j).is_some_and(|n| n.1.is_ascii_digit()) {
                    i = j;
                    while i < chars.len() && chars[i].1.is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().map(|p| p.1).collect();
            tokens.push(Spanned {
                token: Token::Number(text),
                position,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '$'))
            {
                i += 1;
            }
            tokens.push(Spanned {
                token: Token::Word(chars[start..i].iter().map(|p| p.1).collect()),
                position,
            });
            continue;
        }
        let rest = &sql[position..];
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(symbol) => {
                tokens.push(Spanned {
                    token: Token::Symbol(symbol),
                    position,
                });
                i += symbol.chars().count();
            }
            None => {
                return Err(SqlError {
                    position,
                    message: format!("unexpected character {c:?}"),
                })
            }
        }
    }
    tokens.push(Spanned {
        token: Token::End,
        position: sql.len(),
    });
    Ok(tokens)
}
