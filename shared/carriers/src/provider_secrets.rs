//! Provider credentials in AWS Secrets Manager: one secret per provider, named by the deployment's
//! prefix, the tenant and the provider; a new version on every change, so the worker picks up
//! rotated credentials without a redeploy.

use crate::provider::Credentials;
use crate::provider_ports::{CredentialVault, VaultError};
use async_trait::async_trait;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::Client;
use cellbridge_core::aws::sdk_failure;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone)]
pub struct SecretsManagerVault {
    client: Client,
}

impl SecretsManagerVault {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl CredentialVault for SecretsManagerVault {
    async fn put(&self, name: &str, credentials: &Credentials) -> Result<String, VaultError> {
        let value = credentials.secret().expose_secret().to_owned();
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value.clone())
            .send()
            .await;
        match created {
            Ok(out) => Ok(out.arn.unwrap_or_else(|| name.to_owned())),
            Err(e) if e.code() == Some("ResourceExistsException") => {
                let out = self
                    .client
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(|e| sdk_failure(e, VaultError::Unavailable, VaultError::Rejected))?;
                Ok(out.arn.unwrap_or_else(|| name.to_owned()))
            }
            Err(e) => Err(sdk_failure(
                e,
                VaultError::Unavailable,
                VaultError::Rejected,
            )),
        }
    }

    async fn get(&self, id: &str) -> Result<Credentials, VaultError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| sdk_failure(e, VaultError::Unavailable, VaultError::Rejected))?;
        let value = out
            .secret_string
            .ok_or_else(|| VaultError::Rejected(format!("the secret {id} holds no string")))?;
        Ok(Credentials::from_secret(SecretString::from(value)))
    }

    async fn delete(&self, id: &str) -> Result<(), VaultError> {
        // Without a recovery window the name is free again at once, and nothing keeps the
        // credentials of an account its tenant removed.
        match self
            .client
            .delete_secret()
            .secret_id(id)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(sdk_failure(
                e,
                VaultError::Unavailable,
                VaultError::Rejected,
            )),
        }
    }
}
