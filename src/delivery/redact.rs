//! Target URLs as logs may show them.
//!
//! A call's URL is the caller's, and callers put credentials in URLs:
//! `https://user:password@host/`, `?token=...`, `?sig=...`. Logs are read by
//! more people than the callers' secrets are meant for, so every logged target
//! URL goes through [`redact_url`] first. The path is kept: it is what an
//! operator needs to tell targets apart.

/// What replaces a secret.
const MASK: &str = "***";

/// `url` with its userinfo replaced by `***`, every query value replaced by
/// `***` (names kept; a query item without `=` is replaced whole, it may be a
/// bare token), and a fragment replaced by `***`. Scheme, host, port and path
/// are kept. Any string is accepted: one that is not a URL comes back with
/// the same rules applied to what looks like its parts, and nothing panics.
///
/// `http://u:p@h:81/a/b?token=s3&x=1#frag` → `http://***@h:81/a/b?token=***&x=***#***`
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(url.len());
    match base.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            // The authority ends at the path; a backslash counts too, as browsers treat
            // it (redacting too much is harmless, too little is not).
            let end = rest.find(['/', '\\']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((_userinfo, host)) => {
                    out.push_str(MASK);
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(base),
    }
    if let Some(query) = query {
        out.push('?');
        let items: Vec<String> = query
            .split('&')
            .map(|item| match item.split_once('=') {
                Some((name, _value)) => format!("{name}={MASK}"),
                None if item.is_empty() => String::new(),
                None => MASK.to_owned(),
            })
            .collect();
        out.push_str(&items.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str(MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_values_are_masked_path_kept() {
        let cases = [
            ("http://h/p", "http://h/p"),
            ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/a/b"),
            (
                "http://admin:pw123@127.0.0.1:39410/admin/shutdown?force=1",
                "http://***@127.0.0.1:39410/admin/shutdown?force=***",
            ),
            ("https://user@h/", "https://***@h/"),
            ("http://h/x?token=url-secret&a=1", "http://h/x?token=***&a=***"),
            ("http://h/x?a=&b", "http://h/x?a=***&***"),
            ("http://h/x?", "http://h/x?"),
            ("http://h/x?a=1&&b=2", "http://h/x?a=***&&b=***"),
            ("http://h/x?a=1=2", "http://h/x?a=***"),
            ("http://h/x#access_token=abc", "http://h/x#***"),
            ("http://h/x#", "http://h/x#"),
            ("http://u:p@h?q=1", "http://***@h?q=***"),
            ("http://h/a@b/c", "http://h/a@b/c"),
            ("http://a@b@h/", "http://***@h/"),
            ("http://u:p@h\\@evil/x", "http://***@h\\@evil/x"),
            ("http://[::1]:80/p?k=v", "http://[::1]:80/p?k=***"),
            ("https://例子.测试/路径?密=码", "https://例子.测试/路径?密=***"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn hostile_and_odd_inputs_never_panic_or_leak() {
        for odd in [
            "",
            "?",
            "#",
            "@",
            "://",
            "://@",
            "http://",
            "http://@",
            "http://@/",
            "not a url?secret=1",
            "no-scheme@host/x",
            "?#?#",
            "http://h/\u{1b}[31m?x=\u{0}",
            "💥://💥@💥/💥?💥=💥#💥",
        ] {
            let shown = redact_url(odd);
            assert!(!shown.contains("secret=1"), "{odd} -> {shown}");
            assert!(!shown.contains("💥@"), "{odd} -> {shown}");
        }
        assert_eq!(redact_url("not a url?secret=1"), "not a url?secret=***");
        // 100 000 query items: linear, no recursion.
        let long = format!("http://h/?{}", "a=1&".repeat(100_000));
        assert!(!redact_url(&long).contains("=1"));
    }
}
