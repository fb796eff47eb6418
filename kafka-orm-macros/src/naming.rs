//! Case conversion of type names, and the rules Kafka topic names and SQL table names
//! must follow.

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_LEN: usize = 249;
/// PostgreSQL's limit on identifier length (`NAMEDATALEN - 1`).
pub const MAX_TABLE_LEN: usize = 63;

/// Splits a Rust type name into lowercase words: `HTTPRequestLogged` → `http`,
/// `request`, `logged`; `OrderV2Created` → `order`, `v2`, `created`.
///
/// A word starts at an uppercase letter after a lowercase letter or digit, and at the
/// last capital of an acronym that is followed by a lowercase letter; `_` separates words.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c.is_uppercase() && !word.is_empty() {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                words.push(std::mem::take(&mut word));
            }
        }
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `OrderCreated` → `order-created`, the default topic name.
pub fn kebab_case(name: &str) -> String {
    words(name).join("-")
}

/// `OrderCreated` → `order_created`, the stem of the default table names.
pub fn snake_case(name: &str) -> String {
    words(name).join("_")
}

/// Checks a Kafka topic name; the error says what is wrong and what is allowed.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a Kafka topic name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a valid Kafka topic name; Kafka reserves `.` and `..`"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    chars_and_length(name, allowed, MAX_TOPIC_LEN).map_err(|problem| match problem {
        Problem::Char(bad) => format!("invalid Kafka topic name `{name}`: {bad} is not allowed; a topic name uses only ASCII letters, digits, `.`, `_` and `-`"),
        Problem::Length(len) => format!("the Kafka topic name is {len} characters long; Kafka allows at most {MAX_TOPIC_LEN}"),
    })
}

/// The longest stable message type name.
const MAX_TYPE_NAME_LEN: usize = 255;

/// Checks a stable message type name (`type_name = ".."`, the `kafka-orm-type` header).
pub fn check_type_name(name: &str) -> Result<(), String> {
    const RULE: &str = "a message type name uses only ASCII letters, digits, `.`, `_`, `-` and `/` (no `::`: a Rust path would change when the type moves)";
    if name.is_empty() {
        return Err(format!("the message type name is empty; {RULE}"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    chars_and_length(name, allowed, MAX_TYPE_NAME_LEN).map_err(|problem| match problem {
        Problem::Char(bad) => {
            format!("invalid message type name `{name}`: {bad} is not allowed; {RULE}")
        }
        Problem::Length(len) => format!(
            "the message type name is {len} characters long; at most {MAX_TYPE_NAME_LEN} are allowed"
        ),
    })
}

/// Checks an SQL table name (a plain identifier that needs no quoting on PostgreSQL
/// or SQLite).
pub fn check_table_name(name: &str) -> Result<(), String> {
    const RULE: &str = "a table name is ASCII letters, digits and `_`, not starting with a digit";
    let Some(first) = name.chars().next() else {
        return Err(format!("the table name is empty; {RULE}"));
    };
    if first.is_ascii_digit() {
        return Err(format!(
            "invalid table name `{name}`: it starts with a digit; {RULE}"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_';
    chars_and_length(name, allowed, MAX_TABLE_LEN).map_err(|problem| match problem {
        Problem::Char(bad) => format!("invalid table name `{name}`: {bad} is not allowed; {RULE}"),
        Problem::Length(len) => format!(
            "table name `{name}` is {len} characters long; PostgreSQL's limit is {MAX_TABLE_LEN}"
        ),
    })
}

/// Checks that a (valid) table name can name the module of its generated SeaORM entity:
/// other Rust keywords become raw identifiers (`r#type`), these cannot.
pub fn check_module_name(name: &str) -> Result<(), String> {
    if matches!(name, "self" | "super" | "crate" | "Self" | "_") {
        return Err(format!(
            "`{name}` cannot name the module of the table's generated SeaORM entity; choose another table name"
        ));
    }
    Ok(())
}

/// What is wrong with a name that has no special case left.
enum Problem {
    /// The first character that is not allowed, described.
    Char(String),
    /// The name's length, over the limit.
    Length(usize),
}

/// Every character of `name` `allowed`, and at most `max` bytes long.
fn chars_and_length(name: &str, allowed: impl Fn(char) -> bool, max: usize) -> Result<(), Problem> {
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(Problem::Char(describe_char(bad)));
    }
    if name.len() > max {
        return Err(Problem::Length(name.len()));
    }
    Ok(())
}

/// `` `/` `` for most characters; spelled out where a backticked glyph would be unreadable.
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '`' => "a backtick".into(),
        c if c.is_control() => format!("the control character {c:?}"),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_of_type_names() {
        assert_eq!(kebab_case("OrderCreated"), "order-created");
        assert_eq!(kebab_case("HTTPRequestLogged"), "http-request-logged");
        assert_eq!(kebab_case("OrderHTTP"), "order-http");
        assert_eq!(kebab_case("Order"), "order");
        assert_eq!(kebab_case("OrderV2Created"), "order-v2-created");
        assert_eq!(kebab_case("V2Order"), "v2-order");
        assert_eq!(kebab_case("IOError"), "io-error");
        assert_eq!(kebab_case("Order_Created"), "order-created");
        assert_eq!(kebab_case("lowercase"), "lowercase");
        assert_eq!(kebab_case("A"), "a");
    }

    #[test]
    fn snake_case_of_type_names() {
        assert_eq!(snake_case("OrderCreated"), "order_created");
        assert_eq!(snake_case("HTTPRequestLogged"), "http_request_logged");
    }

    #[test]
    fn topic_names() {
        assert!(check_topic_name("order-events").is_ok());
        assert!(check_topic_name("a.b_c-D9").is_ok());
        assert!(check_topic_name(&"x".repeat(249)).is_ok());
        let long = check_topic_name(&"x".repeat(250)).unwrap_err();
        assert!(long.contains("250 characters long"), "{long}");
        assert!(check_topic_name("").unwrap_err().contains("empty"));
        assert!(check_topic_name(".").unwrap_err().contains("reserves"));
        assert!(check_topic_name("..").unwrap_err().contains("reserves"));
        assert!(check_topic_name("...").is_ok());
        let space = check_topic_name("order events").unwrap_err();
        assert!(space.contains("a space is not allowed"), "{space}");
        let slash = check_topic_name("orders/v1").unwrap_err();
        assert!(slash.contains("`/` is not allowed"), "{slash}");
        assert!(check_topic_name("ordérs").unwrap_err().contains("`é`"));
    }

    #[test]
    fn type_names() {
        assert!(check_type_name("OrderCreated").is_ok());
        assert!(check_type_name("com.example.order-created/v2").is_ok());
        assert!(check_type_name(&"x".repeat(255)).is_ok());
        assert!(
            check_type_name(&"x".repeat(256))
                .unwrap_err()
                .contains("256 characters")
        );
        assert!(check_type_name("").unwrap_err().contains("empty"));
        let path = check_type_name("events::OrderCreated").unwrap_err();
        assert!(
            path.contains("`:` is not allowed") && path.contains("no `::`"),
            "{path}"
        );
    }

    #[test]
    fn table_names() {
        assert!(check_table_name("order_created_outbox").is_ok());
        assert!(check_table_name("_t1").is_ok());
        assert!(check_table_name(&"t".repeat(63)).is_ok());
        assert!(
            check_table_name(&"t".repeat(64))
                .unwrap_err()
                .contains("64")
        );
        assert!(check_table_name("").unwrap_err().contains("empty"));
        assert!(
            check_table_name("1t")
                .unwrap_err()
                .contains("starts with a digit")
        );
        let dash = check_table_name("order-outbox").unwrap_err();
        assert!(dash.contains("`-` is not allowed"), "{dash}");
        assert!(check_module_name("type").is_ok());
        assert!(check_module_name("orders").is_ok());
        for name in ["self", "super", "crate", "Self", "_"] {
            assert!(check_module_name(name).unwrap_err().contains("module"));
        }
    }
}
