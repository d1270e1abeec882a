//! Credential redaction for anything shown to a user or written to a log: URLs from the config, the API
//! and GStreamer's messages, which quote the URLs they were given.

/// Replaces the `user:password@` of every URL in `text` with `***@`.
///
/// A URL's authority runs from its `://` to the first `/`, `?`, `#`, `,` or whitespace. Text with no
/// `://` at all that has no whitespace is taken as one scheme-less URL (`user:pw@host/path`), as typed
/// into a config field.
pub fn redact_credentials(text: &str) -> String {
    let is_end = |c: char| matches!(c, '/' | '?' | '#' | ',') || c.is_whitespace();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    if !text.contains("://") && !text.contains(char::is_whitespace) {
        let end = text.find(is_end).unwrap_or(text.len());
        return match text[..end].rfind('@') {
            Some(at) => format!("***@{}", &text[at + 1..]),
            None => text.to_owned(),
        };
    }
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(is_end).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The URL with its user name and password replaced by `***`.
pub fn redact_url(url: &url::Url) -> String {
    redact_credentials(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_hidden_wherever_a_url_appears() {
        assert_eq!(
            redact_credentials("rtsp://a:b@h:1/p@x"),
            "rtsp://***@h:1/p@x"
        );
        assert_eq!(redact_credentials("a:b@h/p"), "***@h/p");
        assert_eq!(redact_credentials("rtsp://h/p"), "rtsp://h/p");
        assert_eq!(
            redact_credentials("Not Found (404), URL: http://u:p@h:80/x.m3u8, Redirect to: (NULL)"),
            "Not Found (404), URL: http://***@h:80/x.m3u8, Redirect to: (NULL)"
        );
        assert_eq!(
            redact_credentials("from rtsp://u:p@a/1 and rtmp://v:q@b/2"),
            "from rtsp://***@a/1 and rtmp://***@b/2"
        );
        assert_eq!(redact_credentials("rtmp://h/live/k@x"), "rtmp://h/live/k@x");
        assert_eq!(redact_credentials("mail me at a@b"), "mail me at a@b");
        let u = url::Url::parse("rtmp://user:pw@host:1935/live").unwrap();
        assert_eq!(redact_url(&u), "rtmp://***@host:1935/live");
        assert!(!redact_url(&u).contains("pw"));
    }
}
