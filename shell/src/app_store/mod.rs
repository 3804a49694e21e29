//! Apps read from a database (`[app_store] driver = "postgres" | "mysql"`): the rows of
//! soketi's `apps` table layout, turned into the engine's apps.

// Wired to the store thread in the next change.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod row;
