//! Query strings, read the one way Node's engine.io reads them: its `URLSearchParams`, the
//! WHATWG `application/x-www-form-urlencoded` parser (`form_urlencoded` implements the same
//! algorithm). Pairs split on `&`, each on its first `=`; `+` is a space; percent escapes are
//! decoded (an invalid one is kept as written, invalid UTF-8 becomes U+FFFD); of a repeated
//! key, the last value counts.

use std::borrow::Cow;
use std::collections::HashMap;

/// The decoded `(key, value)` pairs of `query` (without its `?`), in order, repeats included.
/// Borrowed from `query` when nothing needed decoding.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes())
}

/// The parameters of `query` (without its `?`): each key with its last value.
pub fn query_params(query: &str) -> HashMap<String, String> {
    query_pairs(query)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The query parameters the engine reads.
#[derive(Debug, Default)]
pub(crate) struct EngineQuery<'a> {
    pub eio: Option<Cow<'a, str>>,
    pub transport: Option<Cow<'a, str>>,
    pub sid: Option<Cow<'a, str>>,
}

impl<'a> EngineQuery<'a> {
    pub(crate) fn parse(query: Option<&'a str>) -> Self {
        let mut q = Self::default();
        for (k, v) in query_pairs(query.unwrap_or("")) {
            let slot = match k.as_ref() {
                "EIO" => &mut q.eio,
                "transport" => &mut q.transport,
                "sid" => &mut q.sid,
                _ => continue,
            };
            *slot = Some(v);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_last_value_wins() {
        let q = EngineQuery::parse(Some("EIO=3&EIO=4&transport=polling&t=abc&sid=x"));
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("polling"));
        assert_eq!(q.sid.as_deref(), Some("x"));
        let q = EngineQuery::parse(None);
        assert!(q.eio.is_none() && q.transport.is_none() && q.sid.is_none());
    }

    #[test]
    fn decoded_as_url_search_params() {
        let p = query_params("&foo=bar&foo=baz&%26a=%26%3D%3Fa&sp=a+b&pct=%41%zz&flag&=v&e=");
        assert_eq!(p["foo"], "baz");
        assert_eq!(p["&a"], "&=?a");
        assert_eq!(p["sp"], "a b");
        assert_eq!(p["pct"], "A%zz");
        assert_eq!(p["flag"], "");
        assert_eq!(p[""], "v");
        assert_eq!(p["e"], "");
        assert_eq!(p.len(), 7);
        // Escaped names are decoded too: `%45IO` is `EIO`.
        let q = EngineQuery::parse(Some("%45IO=4&transport=web%73ocket"));
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("websocket"));
        assert_eq!(query_params("bad=%FF")["bad"], "\u{FFFD}");
        assert!(query_params("").is_empty());
    }
}
