//! wsdump placeholder
fn main() {}
