//! CSV camera inventories: an RFC 4180 reader (quoted fields, `""` escapes, CRLF or LF) and the
//! mapping of rows onto [`RawCamera`], so CSV cameras go through the same validation as TOML ones.

use super::ConfigError;
use super::raw::RawCamera;
use super::types::CameraOrigin;

/// Columns the inventory understands; any other column is ignored.
pub(crate) const COLUMNS: &[&str] = &[
    "id",
    "name",
    "url",
    "sub_url",
    "lat",
    "lon",
    "area_code",
    "area_path",
    "jurisdiction",
    "priority",
    "tags",
    "enabled",
    "gb_code",
    "credentials",
];

const REQUIRED: &[&str] = &["id", "name", "url"];

/// One CSV record and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// A syntax error and the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Splits CSV text into records. Blank lines are skipped; a record may span lines inside quotes.
/// On a syntax error, the records before it are returned with the error.
pub(crate) fn read_records(text: &str) -> (Vec<Record>, Option<SyntaxError>) {
    let mut records = Vec::new();
    let error = read_into(text, &mut records).err();
    (records, error)
}

fn read_into(text: &str, records: &mut Vec<Record>) -> Result<(), SyntaxError> {
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        if chars.peek().is_none() {
            return Ok(());
        }
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        // One record: fields until an unquoted line break or the end of the text.
        loop {
            let quoted = chars.peek() == Some(&'"');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err(SyntaxError {
                                line: start,
                                message: "quoted field is never closed (a \" is missing)".into(),
                            });
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
            }
            // Unquoted content, or what follows a closing quote up to the delimiter.
            let mut end_of_record = false;
            loop {
                match chars.next() {
                    None => {
                        end_of_record = true;
                        break;
                    }
                    Some(',') => break,
                    Some('\r') if chars.peek() == Some(&'\n') => {}
                    Some('\n') => {
                        line += 1;
                        end_of_record = true;
                        break;
                    }
                    Some(c) if quoted => {
                        return Err(SyntaxError {
                            line,
                            message: format!(
                                "unexpected {c:?} after a closing quote (a field's quotes must enclose all of it)"
                            ),
                        });
                    }
                    Some('"') => {
                        return Err(SyntaxError {
                            line,
                            message: "quote inside an unquoted field; quote the whole field and double the \
                                      inner quotes (\"\")"
                                .into(),
                        });
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(std::mem::take(&mut field));
            if end_of_record {
                break;
            }
        }
        let blank = fields.len() == 1 && fields[0].trim().is_empty();
        if !blank {
            records.push(Record {
                line: start,
                fields,
            });
        }
    }
}

/// Imports one inventory file into raw cameras. `label` is the file as written in `camera_csv`
/// and prefixes every error path (`cameras.csv line 7 column url`).
pub(crate) fn import(label: &str, bytes: &[u8], errors: &mut Vec<ConfigError>) -> Vec<RawCamera> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(
                label,
                format!(
                    "not valid UTF-8 (first bad byte at offset {}); spreadsheets often save GBK — \
                     export as \"CSV UTF-8\"",
                    e.valid_up_to()
                ),
            ));
            return Vec::new();
        }
    };
    let (records, syntax) = read_records(text);
    if let Some(e) = syntax {
        // Reported first; the rows before it are still imported and checked.
        errors.push(ConfigError::new(
            format!("{label} line {}", e.line),
            format!("{}; rows from here on are not read", e.message),
        ));
    }
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        errors.push(ConfigError::new(label, "empty file; expected a header row"));
        return Vec::new();
    };

    // Column index per known column name.
    let mut index: Vec<Option<usize>> = vec![None; COLUMNS.len()];
    for (i, name) in header.fields.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        if let Some(k) = COLUMNS.iter().position(|c| *c == name) {
            if index[k].is_some() {
                errors.push(ConfigError::new(
                    format!("{label} line {}", header.line),
                    format!("column {name:?} appears twice in the header"),
                ));
            }
            index[k] = Some(i);
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| {
            COLUMNS
                .iter()
                .position(|k| k == c)
                .and_then(|k| index[k])
                .is_none()
        })
        .collect();
    if !missing.is_empty() {
        errors.push(ConfigError::new(
            format!("{label} line {}", header.line),
            format!(
                "header lacks required column(s) {}; the header is {:?}",
                missing.join(", "),
                header.fields.join(",")
            ),
        ));
        return Vec::new();
    }

    let mut out = Vec::new();
    for record in records {
        if record.fields.len() != header.fields.len() {
            errors.push(ConfigError::new(
                format!("{label} line {}", record.line),
                format!(
                    "row has {} fields but the header has {} (quote fields that contain commas)",
                    record.fields.len(),
                    header.fields.len()
                ),
            ));
            continue;
        }
        let row = Row {
            label,
            record: &record,
            index: &index,
        };
        out.push(row.camera(errors));
    }
    out
}

struct Row<'a> {
    label: &'a str,
    record: &'a Record,
    index: &'a [Option<usize>],
}

impl Row<'_> {
    /// The trimmed cell of a known column; `None` when the column is absent or the cell empty.
    fn cell(&self, column: &str) -> Option<&str> {
        let k = COLUMNS.iter().position(|c| *c == column)?;
        let v = self.record.fields.get(self.index[k]?)?.trim();
        (!v.is_empty()).then_some(v)
    }

    fn text(&self, column: &str) -> Option<String> {
        self.cell(column).map(str::to_owned)
    }

    fn path(&self, column: &str) -> String {
        format!("{} line {} column {column}", self.label, self.record.line)
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        column: &str,
        what: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Result<Option<T>, ()> {
        match self.cell(column) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                errors.push(ConfigError::new(
                    self.path(column),
                    format!("{v:?} is not {what}"),
                ));
            }),
        }
    }

    fn boolean(&self, column: &str, errors: &mut Vec<ConfigError>) -> Result<Option<bool>, ()> {
        let Some(v) = self.cell(column) else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => {
                errors.push(ConfigError::new(
                    self.path(column),
                    format!("{v:?} is not a boolean; use true/false, 1/0 or yes/no"),
                ));
                Err(())
            }
        }
    }

    fn camera(&self, errors: &mut Vec<ConfigError>) -> RawCamera {
        // Cells reported here are marked so validate does not report them again.
        let mut rejected = Vec::new();
        let lat = keep(
            &mut rejected,
            "lat",
            self.parsed::<f64>("lat", "a number", errors),
        );
        let lon = keep(
            &mut rejected,
            "lon",
            self.parsed::<f64>("lon", "a number", errors),
        );
        let priority = keep(
            &mut rejected,
            "priority",
            self.parsed::<i64>("priority", "a whole number 1..=5", errors),
        );
        let enabled = keep(&mut rejected, "enabled", self.boolean("enabled", errors));
        let tags = self.cell("tags").map(|t| {
            t.split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        });
        RawCamera {
            id: self.text("id"),
            gb_code: self.text("gb_code"),
            name: self.text("name"),
            url: self.text("url"),
            sub_url: self.text("sub_url"),
            credentials: self.text("credentials"),
            lat,
            lon,
            area_code: self.text("area_code"),
            area_path: self.text("area_path"),
            jurisdiction: self.text("jurisdiction"),
            priority,
            tags,
            enabled,
            transport: None,
            analysis_fps: None,
            keyframe_only: None,
            maintenance: None,
            origin: Some(CameraOrigin::Csv {
                file: self.label.to_owned(),
                line: self.record.line,
            }),
            rejected,
        }
    }
}

/// The parsed cell, or `None` with the column noted as already reported.
fn keep<T>(rejected: &mut Vec<String>, column: &str, parsed: Result<Option<T>, ()>) -> Option<T> {
    parsed.unwrap_or_else(|()| {
        rejected.push(column.to_owned());
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        let (records, error) = read_records(text);
        assert_eq!(error, None);
        records.into_iter().map(|r| (r.line, r.fields)).collect()
    }

    #[test]
    fn quoting_rules() {
        let got =
            fields("a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\n\n\"multi\nline\",2,\"\"\nlast,row,end");
        assert_eq!(
            got,
            [
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (2, vec!["x, y".into(), "say \"hi\"".into(), String::new()]),
                (4, vec!["multi\nline".into(), "2".into(), String::new()]),
                (6, vec!["last".into(), "row".into(), "end".into()]),
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let (records, e) = read_records("a,b\n1,\"open\n2,3\n");
        assert_eq!((records.len(), e.map(|e| e.line)), (1, Some(2)));
        let (records, e) = read_records("a,b\n1,2\n3,ab\"c\n");
        assert_eq!((records.len(), e.map(|e| e.line)), (2, Some(3)));
        let (_, e) = read_records("a,b\n\"x\"y,2\n");
        assert_eq!(e.map(|e| e.line), Some(2));

        // Rows before the error are still imported.
        let mut errors = Vec::new();
        let cams = import(
            "q.csv",
            "id,name,url\nc1,一,rtsp://h/1\nc2,\"二,rtsp://h/2\n".as_bytes(),
            &mut errors,
        );
        assert_eq!(cams.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("q.csv line 3: quoted field is never closed"),
            "{errors:?}"
        );
    }

    #[test]
    fn rows_map_onto_cameras_and_extra_columns_are_ignored() {
        let text = "\u{feff}ID, Name ,url,备注,tags,enabled,lat,lon\n\
                    c1,\"东街口, 北向\",rtsp://10.0.0.1/live,\"随便, 写\",学校; 路口 ;,No,31.5,117.25\n\
                    c2,西街,rtsp://10.0.0.2/live,,,,,\n";
        let mut errors = Vec::new();
        let cams = import("inv.csv", text.as_bytes(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cams.len(), 2);
        assert_eq!(cams[0].name.as_deref(), Some("东街口, 北向"));
        assert_eq!(
            cams[0].tags,
            Some(vec!["学校".to_owned(), "路口".to_owned()])
        );
        assert_eq!(cams[0].enabled, Some(false));
        assert_eq!((cams[0].lat, cams[0].lon), (Some(31.5), Some(117.25)));
        assert_eq!(cams[1].tags, None);
        assert_eq!(cams[1].enabled, None);
        assert_eq!(
            cams[1].origin,
            Some(CameraOrigin::Csv {
                file: "inv.csv".into(),
                line: 3
            })
        );
    }

    #[test]
    fn bad_rows_are_reported_with_line_and_column() {
        let text = "id,name,url,lat,lon,priority,enabled\n\
                    c1,一,rtsp://10.0.0.1/live,x,1,2,yes\n\
                    c2,二,rtsp://10.0.0.2/live,1,2\n\
                    c3,三,rtsp://10.0.0.3/live,,,high,perhaps\n";
        let mut errors = Vec::new();
        let cams = import("inv.csv", text.as_bytes(), &mut errors);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "inv.csv line 2 column lat: \"x\" is not a number",
                "inv.csv line 3: row has 5 fields but the header has 7 (quote fields that contain commas)",
                "inv.csv line 4 column priority: \"high\" is not a whole number 1..=5",
                "inv.csv line 4 column enabled: \"perhaps\" is not a boolean; use true/false, 1/0 or yes/no",
            ]
        );
        assert_eq!(cams.len(), 2);
        assert_eq!((cams[0].lat, cams[0].lon), (None, Some(1.0)));
        assert_eq!(cams[0].rejected, ["lat"]);
        assert_eq!(cams[1].rejected, ["priority", "enabled"]);
    }

    #[test]
    fn header_and_encoding_problems() {
        let mut errors = Vec::new();
        assert!(import("a.csv", b"id,name\nc1,x\n", &mut errors).is_empty());
        assert!(
            errors[0]
                .to_string()
                .starts_with("a.csv line 1: header lacks required column(s) url")
        );
        errors.clear();
        assert!(
            import(
                "g.csv",
                b"id,name,url\nc1,\xb6\xab,rtsp://h/\n",
                &mut errors
            )
            .is_empty()
        );
        assert!(errors[0].to_string().contains("CSV UTF-8"), "{errors:?}");
        errors.clear();
        assert!(import("e.csv", b"", &mut errors).is_empty());
        assert_eq!(errors[0].path, "e.csv");
    }
}
