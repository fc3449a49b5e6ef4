//! One interface over the two stores: SQLite (embedded, the default) and
//! PostgreSQL (several coordinators, high availability).
//!
//! Statements are written once, in the SQL both understand, with numbered
//! parameters (`?1`, rewritten `$1` for PostgreSQL); the few that differ ask
//! [`Db::dialect`]. Values cross as [`Value`]s and rows come back as
//! [`Row`]s, so the store's functions never see a driver's types.

use std::collections::HashMap;

use super::StoreError;

/// Which SQL a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// Makes a [`Value`] of a Rust value (the `vals!` macro makes a list).
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// Parameters for a statement: `vals![a, b]`.
macro_rules! vals {
    ($($e:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$e)),*][..]
    };
}
pub(crate) use vals;

/// A column's value read back as a Rust type.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a query's answer.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a value of another type is a corrupt store.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {i} holds {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// What the store's functions run statements on: a connection or a
/// transaction, of either backend.
pub trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Every row a query answers.
    fn rows(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// The first row a query answers, if any.
    fn row(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

/// A connection to the store.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

/// A transaction: committed by [`Tx::commit`], rolled back when dropped
/// without it.
pub enum Tx<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Postgres(PgTx<'a>),
}

impl Conn {
    /// Starts a transaction.
    pub fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => Tx::Sqlite(c.transaction()?),
            Conn::Postgres(c) => {
                c.simple("BEGIN")?;
                let tx = PgTx {
                    conn: c,
                    done: false,
                };
                tx.conn.check_fence()?;
                Tx::Postgres(tx)
            }
        })
    }
}

impl Tx<'_> {
    /// Commits the transaction.
    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => Ok(t.commit()?),
            Tx::Postgres(mut t) => {
                t.done = true;
                t.conn.simple("COMMIT")
            }
        }
    }
}

impl Db for Conn {
    fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => sqlite_exec(c, sql, params),
            // A fenced write outside a transaction gets one of its own,
            // so that the term is checked with it.
            Conn::Postgres(c) if c.fence.is_some() => {
                let mut tx = self.transaction()?;
                let n = tx.exec(sql, params)?;
                tx.commit()?;
                Ok(n)
            }
            Conn::Postgres(c) => c.exec(sql, params),
        }
    }
    fn rows(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => sqlite_rows(c, sql, params),
            Conn::Postgres(c) => c.rows(sql, params),
        }
    }
}

impl Db for Tx<'_> {
    fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Tx::Sqlite(c) => sqlite_exec(c, sql, params),
            Tx::Postgres(t) => t.conn.exec(sql, params),
        }
    }
    fn rows(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Tx::Sqlite(c) => sqlite_rows(c, sql, params),
            Tx::Postgres(t) => t.conn.rows(sql, params),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Through the connection's statement cache: the writes made per host
/// (results, host records, commands sent) are parsed once, not once per
/// host (SQLite's parser was 4 % of the coordinator's time while 10k hosts
/// answered; BENCHMARKS.md).
fn sqlite_exec(c: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
    let n = c
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(params))?;
    Ok(n as u64)
}

fn sqlite_rows(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            use rusqlite::types::ValueRef;
            row.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                // Not stored by Cutover; read as their text.
                ValueRef::Real(f) => Value::Text(f.to_string()),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(Row(row));
    }
    Ok(out)
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgConn {
    /// Always set but while dropped (see the Drop).
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
    /// The leader term every transaction checks first ([`super::Store::fence`]).
    pub(super) fence: Option<u64>,
}

/// A PostgreSQL transaction (BEGIN sent; COMMIT or ROLLBACK to come).
pub struct PgTx<'a> {
    conn: &'a mut PgConn,
    done: bool,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A connection that failed mid-transaction is closed and
            // rolled back by the server; nothing to report.
            let _ = self.conn.client().batch_execute("ROLLBACK");
        }
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // The synchronous client owns a runtime of its own, which must not
        // be dropped on an async task's thread: dropped on a thread of its
        // own.
        if let Some(c) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("store-close".into())
                .spawn(move || drop(c));
        }
    }
}

/// Runs `f` where the synchronous PostgreSQL client may block: on this
/// thread outside async code, else on a scoped thread of its own (a
/// runtime's thread cannot block on another runtime).
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

impl PgConn {
    pub fn new(client: postgres::Client) -> Self {
        Self {
            client: Some(client),
            statements: HashMap::new(),
            fence: None,
        }
    }

    fn client(&mut self) -> &mut postgres::Client {
        self.client.as_mut().expect("set until dropped")
    }

    /// Inside a transaction: refuses it unless `fence` is still the
    /// leader's term. The lease row stays key-share-locked until the
    /// transaction ends, so a takeover (which locks it `FOR UPDATE`) waits
    /// for this write or this write sees the new term: no write of an old
    /// term lands after a new one began. The leader's own renewals (a
    /// plain UPDATE of other columns) are not held up by it.
    fn check_fence(&mut self) -> Result<(), StoreError> {
        let Some(term) = self.fence else {
            return Ok(());
        };
        let rows = self.rows(
            "SELECT term FROM cutover_leader WHERE id = 1 FOR KEY SHARE",
            &[],
        )?;
        let now = rows.first().map(|r| r.get::<i64>(0)).transpose()?;
        if now != Some(term as i64) {
            return Err(StoreError::Fenced { term });
        }
        Ok(())
    }

    /// Whether the server has gone (the store makes a new connection).
    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.is_closed())
    }

    fn simple(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client().batch_execute(sql).map_err(pg_err)
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let st = self.client().prepare(&numbered(sql)).map_err(pg_err)?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        self.client().execute(&st, &refs).map_err(pg_err)
    }

    fn rows(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client().query(&st, &refs).map_err(pg_err)?;
        rows.iter().map(pg_row).collect()
    }
}

/// `?1` → `$1`: the statements are written with SQLite's numbered
/// parameters (neither dialect's string literals here hold a `?`).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn pg_err(e: postgres::Error) -> StoreError {
    StoreError::Postgres(e)
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut row = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let t = col.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int))
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Value::Int(v.into())))
        } else if *t == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Value::Int(v.into())))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Value::Int(v.into())))
        } else if *t == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)
                .map(|v| v.map(Value::Blob))
        } else if *t == Type::NUMERIC {
            return Err(StoreError::Corrupt(format!(
                "column {} is NUMERIC, which the store does not use",
                col.name()
            )));
        } else {
            r.try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text))
        };
        row.push(v.map_err(pg_err)?.unwrap_or(Value::Null));
    }
    Ok(Row(row))
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
            Value::Int(_) => Err(format!("an integer cannot be stored as {ty}").into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_are_rewritten_for_postgres_and_nothing_else() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?1 AND (?12 = '' OR c = ?12) AND d != '?'"),
            "SELECT a FROM t WHERE b = $1 AND ($12 = '' OR c = $12) AND d != '?'"
        );
    }

    #[test]
    fn values_read_back_as_their_type_and_a_mismatch_is_named() {
        let r = Row(vec![Value::Int(7), Value::Null, Value::Text("x".into())]);
        assert_eq!(r.get::<i64>(0).unwrap(), 7);
        assert!(r.get::<bool>(0).unwrap());
        assert_eq!(r.get::<Option<i64>>(1).unwrap(), None);
        assert_eq!(r.get::<String>(2).unwrap(), "x");
        let e = r.get::<i64>(2).unwrap_err().to_string();
        assert!(e.contains("column 2"), "{e}");
    }
}
