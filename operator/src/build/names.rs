//! Names of the objects a FileStore owns, derived from the FileStore's name so that two
//! FileStores in one namespace never collide.

pub fn api(fs: &str) -> String {
    format!("{fs}-api")
}

pub fn worker_pool(fs: &str, pool: &str) -> String {
    format!("{fs}-worker-{pool}")
}

/// Settings every Filestore process reads (`envFrom`).
pub fn config(fs: &str) -> String {
    format!("{fs}-config")
}

/// Credentials the operator generated once and never rotates.
pub fn generated_secret(fs: &str) -> String {
    format!("{fs}-generated")
}

pub fn database(fs: &str) -> String {
    format!("{fs}-db")
}

/// The Service that follows the primary.
pub fn database_read_write(fs: &str) -> String {
    format!("{fs}-db-rw")
}

/// The Service over the streaming standbys.
pub fn database_read_only(fs: &str) -> String {
    format!("{fs}-db-ro")
}

pub fn database_scripts(fs: &str) -> String {
    format!("{fs}-db-scripts")
}

pub fn queue(fs: &str) -> String {
    format!("{fs}-rabbitmq")
}

/// The headless Service that gives each RabbitMQ node a stable DNS name.
pub fn queue_nodes(fs: &str) -> String {
    format!("{fs}-rabbitmq-nodes")
}

pub fn queue_config(fs: &str) -> String {
    format!("{fs}-rabbitmq-config")
}

/// RabbitMQ's default-user file, derived from the generated password.
pub fn queue_user(fs: &str) -> String {
    format!("{fs}-rabbitmq-user")
}

/// Pod name of the `ordinal`th instance of a StatefulSet.
pub fn ordinal_pod(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}
