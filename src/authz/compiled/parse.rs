//! The matcher, parsed once into an [`Expr`] tree: equalities, role checks
//! `g(...)`, casbin's pattern functions, `&&`, `||`, `!` and string
//! literals. Anything else does not parse, and the model is left to
//! casbin-rs.

use super::{Expr, Func, Operand};

/// Parses `matcher` (tokens written `r_x`/`p_y`, as casbin-rs's model holds
/// them) against the model's request and policy tokens and its groupings.
pub(super) fn parse_matcher(
    matcher: &str,
    request: &[String],
    policy: &[String],
    groupings: &std::collections::HashMap<String, usize>,
    typed_roles: bool,
) -> Option<Expr> {
    let mut parser = Parser {
        tokens: tokenize(matcher)?,
        at: 0,
        request,
        policy,
        groupings,
        typed_roles,
    };
    let expr = parser.or()?;
    (parser.at == parser.tokens.len()).then_some(expr)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    And,
    Or,
    Not,
    EqEq,
    NotEq,
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                tokens.push(Token::And);
                i += 2
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                tokens.push(Token::Or);
                i += 2
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::EqEq);
                i += 2
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::NotEq);
                i += 2
            }
            '!' => {
                tokens.push(Token::Not);
                i += 1
            }
            '"' => {
                // A plain literal; escapes would need rhai's rules.
                let end = chars[i + 1..].iter().position(|&c| c == '"')? + i + 1;
                let literal: String = chars[i + 1..end].iter().collect();
                if literal.contains('\\') {
                    return None;
                }
                tokens.push(Token::Str(literal));
                i = end + 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                // `r.sub` as written in model.conf reads as casbin's
                // `r_sub`; inside a string literal nothing is rewritten
                // (casbin-rs's own escaping turns "a.p.p.l.e" into
                // "a.p_p_l.e").
                let mut name = String::new();
                loop {
                    let start = i;
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    name.extend(&chars[start..i]);
                    let more = chars.get(i) == Some(&'.')
                        && chars
                            .get(i + 1)
                            .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_');
                    if !more {
                        break;
                    }
                    name.push('_');
                    i += 1;
                }
                tokens.push(Token::Ident(name));
            }
            _ => return None,
        }
    }
    Some(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    request: &'a [String],
    policy: &'a [String],
    groupings: &'a std::collections::HashMap<String, usize>,
    /// Role checks name their role definition (`g`, `g2`): each has its
    /// own graph and matching functions, as in Go Casbin.
    typed_roles: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, token: Token) -> Option<()> {
        (self.next()? == token).then_some(())
    }

    fn or(&mut self) -> Option<Expr> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.next();
            terms.push(self.and()?);
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Option<Expr> {
        let mut terms = vec![self.unary()?];
        while self.peek() == Some(&Token::And) {
            self.next();
            terms.push(self.unary()?);
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.peek() == Some(&Token::Not) {
            self.next();
            return Some(Expr::Not(Box::new(self.unary()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Option<Expr> {
        if self.peek() == Some(&Token::Open) {
            self.next();
            let inner = self.or()?;
            self.expect(Token::Close)?;
            return Some(inner);
        }
        if let Some(Token::Ident(name)) = self.peek().cloned() {
            if self.tokens.get(self.at + 1) == Some(&Token::Open) {
                return self.call(&name);
            }
            if name == "true" || name == "false" {
                self.next();
                return Some(Expr::Bool(name == "true"));
            }
        }
        let left = self.operand()?;
        match self.next()? {
            Token::EqEq => Some(Expr::Eq(left, self.operand()?)),
            Token::NotEq => Some(Expr::Ne(left, self.operand()?)),
            _ => None,
        }
    }

    fn call(&mut self, name: &str) -> Option<Expr> {
        self.next();
        self.expect(Token::Open)?;
        let mut args = vec![self.operand()?];
        while self.peek() == Some(&Token::Comma) {
            self.next();
            args.push(self.operand()?);
        }
        self.expect(Token::Close)?;
        if let Some(&arity) = self.groupings.get(name) {
            if self.typed_roles {
                return match (arity, args.len()) {
                    (2, 2) | (3, 3) => Some(Expr::TypedRole {
                        group: name.to_owned(),
                        member: args[0].clone(),
                        role: args[1].clone(),
                        domain: args.get(2).cloned(),
                    }),
                    _ => None,
                };
            }
            return match (arity, args.len()) {
                (2, 2) => Some(Expr::Role(args[0].clone(), args[1].clone(), None)),
                (3, 3) => Some(Expr::Role(
                    args[0].clone(),
                    args[1].clone(),
                    Some(args[2].clone()),
                )),
                _ => None,
            };
        }
        let func = Func::from_name(name)?;
        if args.len() != 2 {
            return None;
        }
        Some(Expr::Call(func, args[0].clone(), args[1].clone()))
    }

    fn operand(&mut self) -> Option<Operand> {
        match self.next()? {
            Token::Str(s) => Some(Operand::Literal(s)),
            Token::Ident(name) => {
                if let Some(i) = self.request.iter().position(|t| *t == name) {
                    Some(Operand::Request(i))
                } else {
                    self.policy
                        .iter()
                        .position(|t| *t == name)
                        .map(Operand::Policy)
                }
            }
            _ => None,
        }
    }
}
