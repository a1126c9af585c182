//! Prints the FileStore CRD as YAML: `cargo run -p filestore-operator --bin crdgen > crds/filestore.yaml`.
#![forbid(unsafe_code)]

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", filestore_operator::crd::crd_yaml()?);
    Ok(())
}
