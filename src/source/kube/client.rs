//! The Kubernetes client from the configuration, and the start-up check that this
//! node's name really is a Node (a hostname that differs would silently watch nothing).

use k8s_openapi::api::core::v1::Node;
use kube::config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};

use crate::config::KubernetesConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubernetes.url {url:?}: {source}")]
    Url {
        url: String,
        source: http::uri::InvalidUri,
    },
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: KubeconfigError,
    },
    #[error("in-cluster configuration: {0}")]
    InCluster(#[source] InClusterError),
    #[error("creating the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("kubernetes.label_selector: {0}")]
    Selector(String),
}

/// `None` when no Kubernetes API is configured (the KubeVirt source stays off).
pub async fn client_from_config(cfg: &KubernetesConfig) -> Result<Option<Client>, ClientError> {
    let config = if let Some(url) = &cfg.url {
        let uri = url.parse().map_err(|source| ClientError::Url {
            url: url.clone(),
            source,
        })?;
        Config::new(uri)
    } else if let Some(path) = &cfg.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?
    } else if cfg.in_cluster {
        Config::incluster().map_err(ClientError::InCluster)?
    } else {
        return Ok(None);
    };
    Client::try_from(config)
        .map(Some)
        .map_err(ClientError::Client)
}

/// Logs loudly when no Node object has this name. Returns whether it exists (None when
/// the API could not say).
pub async fn check_node(client: &Client, node: &str) -> Option<bool> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(node).await {
        Ok(Some(_)) => {
            tracing::info!(node, "Node object found");
            Some(true)
        }
        Ok(None) => {
            tracing::error!(
                node,
                "NO Node object named {node:?} exists: the node role watches VMIs labelled kubevirt.io/nodeName={node} and will see none; set node_name to this host's Kubernetes node name"
            );
            Some(false)
        }
        Err(e) => {
            tracing::warn!(node, error = %e, "could not check the Node object");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn kube_config() -> KubernetesConfig {
        KubernetesConfig {
            kubeconfig: None,
            url: None,
            in_cluster: false,
            namespaces: Vec::new(),
            label_selector: None,
        }
    }

    /// The client library's error stays the cause; the message still names it.
    #[tokio::test]
    async fn errors_keep_the_client_librarys_error_as_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("kubeconfig");
        let cfg = KubernetesConfig {
            kubeconfig: Some(missing.clone()),
            ..kube_config()
        };
        let Err(e) = client_from_config(&cfg).await else {
            panic!("no error")
        };
        assert!(matches!(e, ClientError::Kubeconfig { .. }), "{e}");
        let source = e.source().expect("a source");
        assert!(source.is::<KubeconfigError>(), "{source:?}");
        assert_eq!(
            e.to_string(),
            format!("reading kubeconfig {}: {source}", missing.display())
        );

        let cfg = KubernetesConfig {
            url: Some("https://bad host".to_owned()),
            ..kube_config()
        };
        let Err(e) = client_from_config(&cfg).await else {
            panic!("no error")
        };
        let source = e.source().expect("a source");
        assert!(source.is::<http::uri::InvalidUri>(), "{source:?}");
        assert_eq!(
            e.to_string(),
            format!("kubernetes.url \"https://bad host\": {source}")
        );
        assert!(client_from_config(&kube_config()).await.unwrap().is_none());
    }
}
