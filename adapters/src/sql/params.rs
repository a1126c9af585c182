//! Generated placeholder lists, for statements that take a variable number of values: neither
//! engine's arrays reach the other, so sets travel as `IN ($1, ...)` lists and rows as
//! multi-row `VALUES`, in batches.
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Encode, Type};

/// Values per statement: far below both engines' limits on bound parameters (SQLite 32766,
/// PostgreSQL 65535), even for rows of several columns.
pub(crate) const BATCH: usize = 500;

/// `$first, ..., $(first + n - 1)`.
pub(crate) fn list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `n` rows of `width` placeholders each, numbered from `first`: `($1, $2), ($3, $4)`.
pub(crate) fn rows(first: usize, width: usize, n: usize) -> String {
    (0..n)
        .map(|r| format!("({})", list(first + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `q` with every value of `values` bound, in order.
pub(crate) fn bind_all<'q, T>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    values: &'q [T],
) -> Query<'q, Any, AnyArguments<'q>>
where
    T: Encode<'q, Any> + Type<Any> + Sync,
{
    for v in values {
        q = q.bind(v);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(list(2, 3), "$2, $3, $4");
        assert_eq!(list(1, 0), "");
        assert_eq!(rows(1, 2, 2), "($1, $2), ($3, $4)");
    }
}
