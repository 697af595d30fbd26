/** The SBOM of an image as an SPDX 2.3 JSON document, from the packages its files show. */
import type { Package } from "./packages.ts";

export interface SpdxDocument {
  spdxVersion: "SPDX-2.3";
  [field: string]: unknown;
}

/** An SPDX license expression we can pass on as declared; anything else is NOASSERTION. */
const LICENSE = /^\(?[A-Za-z0-9.+-]+(\s+(AND|OR|WITH)\s+\(?[A-Za-z0-9.+-]+\)?)*\)?$/;

export function spdxDocument(options: { name: string; namespace: string; created: Date; tool: string; packages: Package[] }): SpdxDocument {
  const ids = options.packages.map((_, i) => `SPDXRef-Package-${i + 1}`);
  return {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: options.name,
    documentNamespace: options.namespace,
    creationInfo: { created: options.created.toISOString().replace(/\.\d+Z$/, "Z"), creators: [`Tool: ${options.tool}`] },
    packages: options.packages.map((p, i) => ({
      SPDXID: ids[i],
      name: p.name,
      versionInfo: p.version,
      downloadLocation: "NOASSERTION",
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: p.license && LICENSE.test(p.license) ? p.license : "NOASSERTION",
      copyrightText: "NOASSERTION",
      sourceInfo: `${p.type} package, listed in ${p.source}`,
      externalRefs: [{ referenceCategory: "PACKAGE-MANAGER", referenceType: "purl", referenceLocator: p.purl }],
    })),
    relationships: ids.map((id) => ({ spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: id })),
  };
}
