//! The statement grammar: `SELECT [VALUE] items FROM 'filter' [WHERE expr]`, expressions with
//! SQL precedence (OR, AND, NOT, comparisons, + -, * / %, unary minus, member access), function
//! calls, object and array literals, CASE, and nested `(SELECT ... FROM <array>)` queries.

use crate::lexer::{tokenize, Spanned, Token};
use crate::value::Value;
use crate::SqlError;

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub projection: Projection,
    /// The topic filter; empty for a nested query.
    pub from_topic: String,
    /// A nested query's source: an array of the enclosing document.
    pub from_expr: Option<Expr>,
    pub filter: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `SELECT VALUE expr`: the output is the value itself.
    Value(Expr),
    Items(Vec<SelectItem>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`: every member of the document.
    All,
    /// An expression, named by its alias path (`AS a.b`) or by itself.
    Named { expr: Expr, name: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// `*` as a function argument: the whole payload.
    Payload,
    /// A member of the document (`color`).
    Name(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Case {
        operand: Box<Expr>,
        arms: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Query(Box<Statement>),
}

pub fn parse(sql: &str) -> Result<Statement, SqlError> {
    let mut parser = Parser {
        tokens: tokenize(sql)?,
        at: 0,
    };
    let statement = parser.statement(true)?;
    parser.expect_end()?;
    Ok(statement)
}

const RESERVED: [&str; 13] = [
    "SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "VALUE", "CASE", "WHEN", "THEN", "ELSE",
    "END",
];

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)].token
    }

    fn position(&self) -> usize {
        self.tokens[self.at.min(self.tokens.len() - 1)].position
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SqlError> {
        Self::error_at(self.position(), message)
    }

    fn error_at<T>(position: usize, message: impl Into<String>) -> Result<T, SqlError> {
        Err(SqlError {
            position,
            message: message.into(),
        })
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.is_keyword(keyword);
        if found {
            self.bump();
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SqlError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            self.error(format!("expected {keyword}, found {:?}", self.peek()))
        }
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Token::Symbol(s) if *s == symbol);
        if found {
            self.bump();
        }
        found
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), SqlError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            self.error(format!("expected '{symbol}', found {:?}", self.peek()))
        }
    }

    fn expect_end(&self) -> Result<(), SqlError> {
        match self.peek() {
            Token::End => Ok(()),
            other => self.error(format!("unexpected {other:?} after the statement")),
        }
    }

    /// `top`: the rule's own statement, whose FROM is a topic filter.
    fn statement(&mut self, top: bool) -> Result<Statement, SqlError> {
        self.expect_keyword("SELECT")?;
        let projection = if self.eat_keyword("VALUE") {
            Projection::Value(self.expr()?)
        } else {
            let mut items = vec![self.select_item()?];
            while self.eat_symbol(",") {
                items.push(self.select_item()?);
            }
            Projection::Items(items)
        };
        self.expect_keyword("FROM")?;
        let (from_topic, from_expr) = if top {
            let at = self.position();
            match self.bump() {
                Token::Str(filter) if crate::topic::is_valid_filter(&filter) => (filter, None),
                Token::Str(filter) => {
                    return Self::error_at(at, format!("{filter:?} is not a valid topic filter"))
                }
                _ => return Self::error_at(at, "FROM takes a topic filter in single quotes"),
            }
        } else {
            (String::new(), Some(self.expr()?))
        };
        let filter = if self.eat_keyword("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Statement {
            projection,
            from_topic,
            from_expr,
            filter,
        })
    }

    fn select_item(&mut self) -> Result<SelectItem, SqlError> {
        if self.eat_symbol("*") {
            return Ok(SelectItem::All);
        }
        let expr = self.expr()?;
        let name = if self.eat_keyword("AS") {
            let mut path = vec![self.name()?];
            while self.eat_symbol(".") {
                path.push(self.name()?);
            }
            path
        } else {
            vec![implicit_name(&expr)]
        };
        Ok(SelectItem::Named { expr, name })
    }

    fn name(&mut self) -> Result<String, SqlError> {
        let at = self.position();
        match self.bump() {
            Token::Word(w) if RESERVED.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                Self::error_at(at, format!("{w} is a keyword, not a name"))
            }
            Token::Word(w) => Ok(w),
            Token::Str(s) => Ok(s),
            other => Self::error_at(at, format!("expected a name, found {other:?}")),
        }
    }

    fn expr(&mut self) -> Result<Expr, SqlError> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            left = Expr::Binary(BinaryOp::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            left = Expr::Binary(BinaryOp::And, Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SqlError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Token::Symbol("=") => BinaryOp::Eq,
            Token::Symbol("<>" | "!=") => BinaryOp::NotEq,
            Token::Symbol("<") => BinaryOp::Lt,
            Token::Symbol("<=") => BinaryOp::Le,
            Token::Symbol(">") => BinaryOp::Gt,
            Token::Symbol(">=") => BinaryOp::Ge,
            _ => return Ok(left),
        };
        self.bump();
        Ok(Expr::Binary(op, Box::new(left), Box::new(self.additive()?)))
    }

    fn additive(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Token::Symbol("+") => BinaryOp::Add,
                Token::Symbol("-") => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            left = Expr::Binary(op, Box::new(left), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Token::Symbol("*") => BinaryOp::Mul,
                Token::Symbol("/") => BinaryOp::Div,
                Token::Symbol("%") => BinaryOp::Rem,
                _ => return Ok(left),
            };
            self.bump();
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, SqlError> {
        if self.eat_symbol("-") {
            return Ok(Expr::Negate(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, SqlError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat_symbol(".") {
                expr = Expr::Member(Box::new(expr), self.name()?);
            } else if self.eat_symbol("[") {
                let index = self.expr()?;
                self.expect_symbol("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        let at = self.position();
        match self.bump() {
            Token::Number(text) => match text.parse::<i64>() {
                Ok(i) => Ok(Expr::Literal(Value::Int(i))),
                Err(_) => match text.parse::<f64>() {
                    Ok(f) => Ok(Expr::Literal(Value::number(f))),
                    Err(_) => Self::error_at(at, format!("{text} is not a number")),
                },
            },
            Token::Str(s) => Ok(Expr::Literal(Value::Str(s))),
            Token::Symbol("*") => Ok(Expr::Payload),
            Token::Symbol("(") => {
                if self.is_keyword("SELECT") {
                    let query = self.statement(false)?;
                    self.expect_symbol(")")?;
                    return Ok(Expr::Query(Box::new(query)));
                }
                let inner = self.expr()?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            Token::Symbol("{") => {
                let mut fields = Vec::new();
                if !self.eat_symbol("}") {
                    loop {
                        let key = self.name()?;
                        self.expect_colon()?;
                        fields.push((key, self.expr()?));
                        if self.eat_symbol("}") {
                            break;
                        }
                        self.expect_symbol(",")?;
                    }
                }
                Ok(Expr::Object(fields))
            }
            Token::Symbol("[") => {
                let mut items = Vec::new();
                if !self.eat_symbol("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat_symbol("]") {
                            break;
                        }
                        self.expect_symbol(",")?;
                    }
                }
                Ok(Expr::Array(items))
            }
            Token::Word(word) => self.word(word),
            Token::End => Self::error_at(at, "the statement ends too early"),
            other => Self::error_at(at, format!("unexpected {other:?}")),
        }
    }

    fn expect_colon(&mut self) -> Result<(), SqlError> {
        self.expect_symbol(":")
    }

    fn word(&mut self, word: String) -> Result<Expr, SqlError> {
        let upper = word.to_ascii_uppercase();
        match upper.as_str() {
            "TRUE" => return Ok(Expr::Literal(Value::Bool(true))),
            "FALSE" => return Ok(Expr::Literal(Value::Bool(false))),
            "NULL" => return Ok(Expr::Literal(Value::Null)),
            "CASE" => return self.case(),
            _ => {}
        }
        if self.eat_symbol("(") {
            let mut args = Vec::new();
            if !self.eat_symbol(")") {
                loop {
                    args.push(self.expr()?);
                    if self.eat_symbol(")") {
                        break;
                    }
                    self.expect_symbol(",")?;
                }
            }
            return Ok(Expr::Call(word.to_ascii_lowercase(), args));
        }
        Ok(Expr::Name(word))
    }

    fn case(&mut self) -> Result<Expr, SqlError> {
        let operand = self.expr()?;
        let mut arms = Vec::new();
        while self.eat_keyword("WHEN") {
            let when = self.expr()?;
            self.expect_keyword("THEN")?;
            arms.push((when, self.expr()?));
        }
        if arms.is_empty() {
            return self.error("CASE needs at least one WHEN");
        }
        let otherwise = if self.eat_keyword("ELSE") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_keyword("END")?;
        Ok(Expr::Case {
            operand: Box::new(operand),
            arms,
            otherwise,
        })
    }
}

/// The output name of an unaliased item: a member's own name, a function's name, else `_1`.
fn implicit_name(expr: &Expr) -> String {
    match expr {
        Expr::Name(name) | Expr::Member(_, name) => name.clone(),
        Expr::Call(function, _) => function.clone(),
        _ => "_1".to_owned(),
    }
}
