//! Small constructors for the nftables expressions and statements hydra's rules use, so the
//! rules read close to `nft` syntax.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, CT,
};
use nftables::stmt::{Counter, Match, Operator, Statement};

use crate::config::Protocol;

pub fn text(s: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(s.into()))
}

pub fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub fn field(protocol: &str, name: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Owned(protocol.to_string()),
            field: Cow::Owned(name.to_string()),
        },
    )))
}

fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Owned(key.to_string()),
        family: None,
        dir: None,
    }))
}

pub fn prefix(addr: Ipv4Addr, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(addr.to_string())),
        len,
    }))
}

pub fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

pub fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

pub fn iif(name: &str) -> Statement<'static> {
    eq(meta(MetaKey::Iifname), text(name))
}

pub fn oif(name: &str) -> Statement<'static> {
    eq(meta(MetaKey::Oifname), text(name))
}

pub fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

pub fn ct_in(key: &str, values: &[&str]) -> Statement<'static> {
    let right = match values {
        [one] => text(*one),
        many => Expression::List(many.iter().map(|v| text(*v)).collect()),
    };
    matches(ct(key), Operator::IN, right)
}

pub fn established() -> Statement<'static> {
    ct_in("state", &["established", "related"])
}

pub fn port(protocol: Protocol, which: &str, number: u16) -> Statement<'static> {
    eq(
        field(protocol.name(), which),
        Expression::Number(number.into()),
    )
}
