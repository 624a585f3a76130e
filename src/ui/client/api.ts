// The shapes of the web catalog's JSON API that both sides use: the server builds them
// (src/ui/catalog.ts, details.ts) and the page reads them (client/*.ts). Types only, so this file
// compiles in both builds and emits nothing the page loads.

export interface Source {
  /** 'pushed' for the folder pushes write to; 'upstream' for a folder of models from elsewhere. */
  kind: 'pushed' | 'upstream';
  /** Shown to users: "pushed", or the upstream's host name. */
  label: string;
}

/** What a tag holds: it decides the pull command the page shows. */
export type ArtifactKind = 'ollama' | 'ollama-list' | 'docker-model' | 'modelpack' | 'image';

export interface TagSummary {
  tag: string;
  kind: ArtifactKind;
  /** os/architecture of a container image (null for models and multi-platform images). */
  platform: string | null;
  /** Layers + config, as `ollama list` shows it. */
  size: number;
  family: string | null;
  parameterSize: string | null;
  quantization: string | null;
  contextLength: number | null;
  /** Manifest file mtime (ISO 8601): when the tag was last written. */
  modified: string;
  digest: string;
  /** What `ollama list` shows as ID: the first 12 hex of the manifest's sha256. */
  id: string;
  /** The config blob is named but not stored (or not readable JSON). */
  configMissing: boolean;
  /** Referenced blobs that are not in the store. */
  missingBlobs: number;
  /** The host folder that answers pulls of this name instead (see the lookup rule). */
  shadowedBy: string | null;
  /** Why the manifest could not be read, when it could not. */
  problem: string | null;
}

export interface ModelSummary {
  host: string;
  namespace: string;
  model: string;
  source: Source;
  tags: TagSummary[];
  /** Bytes of the distinct blobs of all its tags (what it takes on disk). */
  size: number;
  modified: string;
}

export interface TextLayer {
  digest: string;
  size: number;
  text: string;
  truncated: boolean;
  /** Absent from the store: text is empty. */
  missing: boolean;
}

export interface LayerInfo {
  mediaType: string;
  /** The last part of an ollama media type (model, template, license, …). */
  kind: string;
  digest: string;
  size: number;
  present: boolean;
  from: string | null;
}

/** One child of a list: a variant of an ollama model (runner, format), or a platform of an image. */
export interface ChildInfo {
  digest: string;
  size: number;
  mediaType: string;
  /** The child manifest is here. */
  present: boolean;
  runner: string | null;
  format: string | null;
  platform: string | null;
  /** Layers + config of the child, when it is here. */
  blobsSize: number | null;
}

export interface ModelDetails {
  model: ModelSummary;
  tag: TagSummary;
  manifest: { digest: string; id: string; size: number; mediaType: string; modified: string };
  config: { digest: string; size: number; present: boolean; values: Record<string, string | number | boolean | string[]> } | null;
  /** What the model was trained for (`ollama show`'s context length), from the config or the GGUF header. */
  contextLength: { value: number; from: 'config' | 'model file' } | null;
  layers: LayerInfo[];
  /** A list's children ([] for an image). */
  children: ChildInfo[];
  texts: {
    template: TextLayer | null;
    system: TextLayer | null;
    params: (TextLayer & { values: Record<string, unknown> | null }) | null;
    messages: TextLayer | null;
    licenses: TextLayer[];
  };
}
