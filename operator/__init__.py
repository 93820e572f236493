"""The whoiscrawl Kubernetes operator: WhoisCrawl CRD, kopf handlers, builders and policies."""
