//! TLS failures in words, for PostgreSQL and Redis alike: rustls names
//! its reasons in enum form (`UnknownIssuer`); an operator needs to know
//! which certificate is wrong and what to change.

/// Makes rustls's ring provider the process default (once), so every
/// TLS client — PostgreSQL, Redis, relays — works whichever crypto
/// features the dependency graph enables (rustls refuses to guess when
/// two providers are compiled in).
pub(crate) fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// What a TLS error text means, when it is one we recognise.
pub(crate) fn words(detail: &str) -> Option<&'static str> {
    let d = detail;
    let has = |s: &str| d.contains(s);
    Some(if has("UnknownIssuer") || has("unknown issuer") {
        "the server's certificate is not signed by a CA this client trusts"
    } else if has("NotValidForName") || has("not valid for name") {
        "the server's certificate does not name the host in the URL"
    } else if has("Expired") || has("expired") {
        "the server's certificate has expired"
    } else if has("NotValidYet") {
        "the server's certificate is not valid yet (check the clocks)"
    } else if has("BadSignature") || has("BadEncoding") {
        "the server's certificate is malformed or badly signed"
    } else if has("does not support TLS") || has("does not support SSL") {
        "the server does not offer TLS"
    } else if has("CertificateRequired") || has("certificate required") {
        "the server requires a client certificate, which dvmtop does not send"
    } else if has("UnknownCA") || has("BadCertificate") || has("received fatal alert") {
        "the server refused the TLS handshake"
    } else if has("InvalidContentType")
        || has("CorruptMessage")
        || has("wrong version number")
        || has("InvalidMessage")
    {
        "the server did not answer in TLS (is it a plain-text port?)"
    } else {
        return None;
    })
}

/// `detail`, with the words in front when we recognise it.
pub(crate) fn explain(detail: &str) -> String {
    match words(detail) {
        Some(w) => format!("{w}: {detail}"),
        None => detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_reasons_get_words() {
        assert_eq!(
            words("invalid peer certificate: UnknownIssuer"),
            Some("the server's certificate is not signed by a CA this client trusts")
        );
        assert!(
            explain("server does not support TLS").starts_with("the server does not offer TLS")
        );
        assert_eq!(words("something else"), None);
    }
}
