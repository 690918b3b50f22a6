//! The Kubernetes client from the configuration, and the start-up check that this
//! node's name really is a Node (a hostname that differs would silently watch nothing).

use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::config::KubernetesConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubernetes.url {url:?}: {problem}")]
    Url { url: String, problem: String },
    #[error("reading kubeconfig {path}: {problem}")]
    Kubeconfig { path: String, problem: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("creating the Kubernetes client: {0}")]
    Client(String),
    #[error("kubernetes.label_selector: {0}")]
    Selector(String),
}

/// `None` when no Kubernetes API is configured (the KubeVirt source stays off).
pub async fn client_from_config(cfg: &KubernetesConfig) -> Result<Option<Client>, ClientError> {
    let config = if let Some(url) = &cfg.url {
        let uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Url {
                url: url.clone(),
                problem: e.to_string(),
            })?;
        Config::new(uri)
    } else if let Some(path) = &cfg.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| ClientError::Kubeconfig {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ClientError::Kubeconfig {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?
    } else if cfg.in_cluster {
        Config::incluster().map_err(|e| ClientError::InCluster(e.to_string()))?
    } else {
        return Ok(None);
    };
    Client::try_from(config)
        .map(Some)
        .map_err(|e| ClientError::Client(e.to_string()))
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
