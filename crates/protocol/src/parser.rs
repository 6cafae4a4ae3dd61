//! Which Socket.IO packet encoding a server speaks.

use std::fmt;
use std::str::FromStr;

/// The Socket.IO packet encoding, chosen for a whole server: as in Node, every client of a
/// server must use the same parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parser {
    /// The default text encoding of `socket.io-parser` ([`crate::socketio`]): JSON text, binary
    /// values as attachments sent after the text.
    #[default]
    Default,
    /// `socket.io-msgpack-parser` ([`crate::msgpack`]): each packet is one msgpack map sent as
    /// one binary Engine.IO message, binary values inline.
    Msgpack,
}

impl Parser {
    /// The name used in configuration: `default` or `msgpack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Msgpack => "msgpack",
        }
    }
}

impl fmt::Display for Parser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parser name that is neither `default` nor `msgpack`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown parser {0:?}: use \"default\" or \"msgpack\"")]
pub struct UnknownParser(pub String);

impl FromStr for Parser {
    type Err = UnknownParser;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Self::Default),
            "msgpack" => Ok(Self::Msgpack),
            other => Err(UnknownParser(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Parser::Default, Parser::Msgpack] {
            assert_eq!(p.as_str().parse::<Parser>(), Ok(p));
        }
        assert_eq!(
            "json".parse::<Parser>(),
            Err(UnknownParser("json".to_owned()))
        );
    }
}
