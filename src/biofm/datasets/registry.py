"""Every dataset biofm uses, with its public source, checksum, licence and citation.

biofm ships no third-party data: demos, shipped task names and tests name a dataset here, and
`biofm.datasets.locate` finds its files in a local mirror (`BIOFM_DATA_MIRROR`), in the cache, or
downloads them with pooch and checks their SHA-256. `mirror_path` is where each file sits in a mirror
folder (the same layout for every mirror, so one folder serves every machine).

`url` is the exact file the checksum was taken from: a copy pinned to a repository commit where the
publisher's own service re-packages files (NCBI and UCI re-compress and re-zip theirs, which would
change a checksum without changing the data); `origin` names the original publisher. Where the
public original is not a file biofm can read (a JSON corpus, scanpy's processed matrix), `convert`
names the function in `biofm.datasets.convert` that turns it into one; `output_sha256`, when set,
is the checksum the conversion must reproduce byte for byte. A dataset whose public original cannot
be converted in Python here is `mirror_only`, with the reason shown by `biofm data list`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass(frozen=True)
class RemoteFile:
    """One published file: where the mirror holds it, where it is downloaded from, what it must hash to."""

    mirror_path: str  # relative path inside a mirror folder
    sha256: str
    size: int  # bytes
    url: str | None = None  # None: mirror-only

    @property
    def filename(self) -> str:
        return PurePosixPath(self.mirror_path).name


@dataclass(frozen=True)
class Dataset:
    name: str
    modality: str  # dna, cells, atac, multiome, text
    description: str
    licence: str
    citation: str
    origin: str  # the original publisher (accession, DOI or page)
    files: tuple[RemoteFile, ...] = ()
    convert: str | None = None  # a function name in biofm.datasets.convert
    output: str | None = None  # file name of the conversion's result
    output_sha256: str | None = None  # checksum the conversion reproduces exactly (None: not byte-stable)
    derived_from: tuple[str, ...] = ()  # other datasets the conversion reads
    mirror_only: str | None = None  # why no public original can be fetched and converted here
    reads: str = field(default="", compare=False)  # what biofm reads it as (format), for `biofm data list`

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


_MCB185 = "https://raw.githubusercontent.com/iankorf/MCB185/878bc1b91084e706129ae5eb673e36b324d7f293/data"
_NCBI_ECOLI = "NCBI RefSeq GCF_000005845.2 (ASM584v2), https://www.ncbi.nlm.nih.gov/datasets/genome/GCF_000005845.2/"
_RDA_REASON = ("the public original is an R data file (.rda holding an R sparse-matrix object) that is not in the "
               "mirror, so neither its checksum nor a conversion could be checked; converted once and kept in a mirror")
_MCB185_NOTE = ("copied from GitHub iankorf/MCB185 (MIT) data/; sequences and annotations are NCBI RefSeq / "
                "WormBase / TAIR / FlyBase public data")


def _slice(species: str, name: str, what: str, sha_fa: str, size_fa: int, sha_gff: str, size_gff: int,
           origin: str) -> list[Dataset]:
    cite = "Korf I. MCB185 course data (GitHub iankorf/MCB185); " + origin
    return [
        Dataset(f"{name}-slice", "dna", f"{species}: the first 1% of each chromosome ({what})",
                "public sequence data; MIT (MCB185 repository)", cite, _MCB185_NOTE,
                (RemoteFile(f"dna/annotations/{species}.fa.gz", sha_fa, size_fa, f"{_MCB185}/{species}.fa.gz"),),
                reads="FASTA.gz"),
        Dataset(f"{name}-slice-gff", "dna", f"{species}: GFF annotation of the same 1% slices",
                "public annotation data; MIT (MCB185 repository)", cite, _MCB185_NOTE,
                (RemoteFile(f"dna/annotations/{species}.gff.gz", sha_gff, size_gff, f"{_MCB185}/{species}.gff.gz"),),
                reads="GFF3.gz"),
    ]


_ENTRIES: list[Dataset] = [
    # ------------------------------------------------------------------------------------------- DNA
    Dataset(
        "ecoli-k12", "dna", "Escherichia coli K-12 MG1655 complete genome, 1 record, 4,641,652 bp (NC_000913.3)",
        "NCBI RefSeq sequence data (public); MIT (MCB185 repository copy)",
        "Blattner FR et al. The complete genome sequence of Escherichia coli K-12. Science 277:1453-1462 (1997)",
        _NCBI_ECOLI,
        (RemoteFile("dna/genomes/ecoli_K12_MG1655_NC_000913.3.fna.gz",
                    "254606e2722f64ca0906dfc1d41bceac41be72c335627c23f831b007939c8a48", 1_424_935,
                    f"{_MCB185}/GCF_000005845.2_ASM584v2_genomic.fna.gz"),),
        reads="FASTA.gz",
    ),
    Dataset(
        "ecoli-k12-gff", "dna", "NCBI GFF3 annotation of E. coli K-12 MG1655 (4,494 genes, 4,337 CDS, 86 tRNA, "
        "22 rRNA, 99 ncRNA), matching ecoli-k12",
        "NCBI RefSeq annotation (public); MIT (MCB185 repository copy)",
        "NCBI RefSeq: O'Leary NA et al. Nucleic Acids Res 44:D733-D745 (2016)", _NCBI_ECOLI,
        (RemoteFile("dna/annotations/GCF_000005845.2_ASM584v2_genomic.gff.gz",
                    "f7da4447a53cd85a86438553cf28ac000f0cb36c4d9b01f41fee00715cc789e8", 441_363,
                    f"{_MCB185}/GCF_000005845.2_ASM584v2_genomic.gff.gz"),),
        reads="GFF3.gz",
    ),
    Dataset(
        "ecoli-elements", "dna", "100 bp E. coli K-12 windows upstream of annotated genes / inside CDS / in "
        "intergenic sequence >= 300 bp from any gene start, 484 each, 5 genome-block folds (task `ecoli-elements`)",
        "NCBI RefSeq sequence and annotation (public)", "as ecoli-k12 and ecoli-k12-gff",
        "converted from ecoli-k12 and ecoli-k12-gff by biofm (biofm.datasets.convert.ecoli_elements)",
        convert="ecoli_elements", output="ecoli_elements.tsv.gz",
        output_sha256="d231e28f7a2bcf8e5a86231b5e9dc380cc9b9886ba8df269e9f0e2cd4e2121a6",
        derived_from=("ecoli-k12", "ecoli-k12-gff"), reads="TSV.gz",
    ),
    Dataset(
        "ecoli-cds-strand", "dna", "100 bp E. coli K-12 CDS windows on their coding strand (1) or reverse-"
        "complemented (0), 1,000 each, one window per gene, 5 genome-block folds (task `ecoli-cds-strand`)",
        "NCBI RefSeq sequence and annotation (public)", "as ecoli-k12 and ecoli-k12-gff",
        "converted from ecoli-k12 and ecoli-k12-gff by biofm (biofm.datasets.convert.ecoli_cds_strand)",
        convert="ecoli_cds_strand", output="ecoli_cds_strand.tsv.gz",
        output_sha256="92914a7b500a5d27c5b6a5bfb4bed8203a41a0434f040d0a2f54dbb27e5abe06",
        derived_from=("ecoli-k12", "ecoli-k12-gff"), reads="TSV.gz",
    ),
    Dataset(
        "lambda-phage", "dna", "Enterobacteria phage lambda complete genome, 1 record, 48,502 bp (NC_001416.1)",
        "NCBI RefSeq sequence data (public); the bowtie2 repository it is copied from is GPL-3.0",
        "Sanger F et al. Nucleotide sequence of bacteriophage lambda DNA. J Mol Biol 162:729-773 (1982)",
        "NCBI RefSeq NC_001416.1, https://www.ncbi.nlm.nih.gov/nuccore/NC_001416.1",
        (RemoteFile("dna/genomes/lambda_phage_NC_001416.1.fa",
                    "0a04f81952deb68c204e8ae67e0573cb97d348f18ab1b527630d57c294028cf5", 49_270,
                    "https://raw.githubusercontent.com/BenLangmead/bowtie2/master/example/reference/lambda_virus.fa"),),
        reads="FASTA",
    ),
    Dataset(
        "yeast-s288c", "dna", "Saccharomyces cerevisiae S288C R64-5-1: 16 chromosomes + mitochondrion, 17 records, "
        "12,157,105 bp",
        "SGD / NCBI reference sequence (public); MIT (RECTIFY repository copy)",
        "Engel SR et al. The reference genome sequence of Saccharomyces cerevisiae. G3 4:389-398 (2014)",
        "Saccharomyces Genome Database, release R64-5-1, https://www.yeastgenome.org/",
        (RemoteFile("dna/genomes/scerevisiae_S288C_R64-5-1.fsa.gz",
                    "ea3999616780fc8f64a854d86d9b7fd5f03b0f82fa87c6507b8d1c31db625316", 3_783_433,
                    "https://raw.githubusercontent.com/k-roy/RECTIFY/124c54ebbe74c205148b0e84579f9a6cc7aec3a6/rectify/data/"
                    "genomes/saccharomyces_cerevisiae/S288C_reference_sequence_R64-5-1_20240529.fsa.gz"),),
        reads="FASTA.gz",
    ),
    *_slice("C.elegans", "celegans", "I-V, X, MtDNA; 1.0 Mbp",
            "18c747265ab3493fbfe0d0dd4936b60d2a8f7d4c150184208d9b3bc9ee3469f2", 305_107,
            "d37378106096fe89450b714402e2f53978636a8985558b2813e4cf933c2d5cf9", 209_684, "WormBase"),
    *_slice("A.thaliana", "athaliana", "chromosomes 1-5, Mt, Pt",
            "c9d8a042cae964d6635564fca17c3402e5649854ec1b06aeae508b1ed30092a6", 371_282,
            "3942e00053d3059c7e8476771c5f63e0fdb1eeaf411d54c634b8f340a85d9e33", 165_471, "TAIR"),
    *_slice("D.melanogaster", "dmelanogaster", "chromosome arms 2L-4, X, Y",
            "dcc5749c9edea0be2934d1706fa2dcdf9caf011f983186f6fbc74742526ea816", 336_913,
            "ff6a88f8e60c2b1468dcfdf1365c5495fd79e24a70396328bf27fa510ec121ca", 69_555, "FlyBase"),
    Dataset(
        "celegans-slice-vcf", "dna", "8,713 real C. elegans variants (SNVs and indels) on the celegans-slice sequences",
        "public variation data (WormBase / CeNDR); MIT (MCB185 repository)",
        "Korf I. MCB185 course data (GitHub iankorf/MCB185); WormBase", _MCB185_NOTE,
        (RemoteFile("dna/annotations/C.elegans.vcf.gz",
                    "6fec33c907f4351392ba639a7b4648a7189a41986b868adc2c9e6d959470cbb9", 63_173,
                    f"{_MCB185}/C.elegans.vcf.gz"),),
        reads="VCF.gz",
    ),
    Dataset(
        "jaspar2024-core", "dna", "JASPAR 2024 CORE transcription-factor motifs (TRANSFAC format)",
        "CC BY 4.0 (JASPAR)",
        "Rauluseviciute I et al. JASPAR 2024. Nucleic Acids Res 52:D174-D182 (2024)",
        "JASPAR 2024, https://jaspar.elixir.no/downloads/",
        (RemoteFile("dna/annotations/jaspar2024_core.transfac.gz",
                    "daebd29c3243e4e1da51a2601b34f52610e46c2219ae002607f9dbc2691e87d7", 252_890,
                    f"{_MCB185}/jaspar2024_core.transfac.gz"),),
        reads="TRANSFAC.gz",
    ),
    Dataset(
        "uci-splice", "dna", "UCI splice-junction gene sequences: 3,190 primate sequences of 60 nt, EI 767 / IE 768 "
        "/ N 1,655 (task `splice`)",
        "CC BY 4.0 (UCI Machine Learning Repository)",
        "Towell G, Noordewier M, Shavlik J. Molecular Biology (Splice-junction Gene Sequences). UCI Machine "
        "Learning Repository (1991), https://doi.org/10.24432/C5M888",
        "UCI Machine Learning Repository dataset 69, https://archive.ics.uci.edu/dataset/69",
        (RemoteFile("dna/tasks/uci_splice_junctions.txt",
                    "ebbae10c85d3c285e2a2489a37e42bc2ee8d91d15005e391a9962fa3389a114f", 319_000,
                    "https://raw.githubusercontent.com/code-cse/Splice-DNA-Gene/master/data/spliceData.txt"),),
        reads="CSV lines `label, id, sequence` (UCI splice.data)",
    ),
    Dataset(
        "dnabert-promoter-sample", "dna", "DNABERT promoter-core sample: 1,000 x 101 bp, 500 promoter cores / 500 "
        "not (task `promoter`); sequences are spaced overlapping 6-mers, joined back by the task reader",
        "Apache-2.0 (DNABERT repository)",
        "Ji Y, Zhou Z, Liu H, Davuluri RV. DNABERT. Bioinformatics 37:2112-2120 (2021)",
        "GitHub jerryji1993/DNABERT examples/sample_data/ft/6/dev.tsv",
        (RemoteFile("dna/tasks/dnabert_prom_core_sample.tsv",
                    "c89896c9c3e93d86463bcd3daedcbc48cf94f2f261990ef0f180bd602fd9a109", 675_016,
                    "https://raw.githubusercontent.com/jerryji1993/DNABERT/5c06211df23e626859ed227c436d3795311581fc/examples/sample_data/ft/6/dev.tsv"),),
        reads="TSV sequence (spaced 6-mers), label",
    ),
    # ------------------------------------------------------------------------------------------- cells
    Dataset(
        "pbmc68k-reduced", "cells", "scanpy's 10x_pbmc68k_reduced.h5ad: 700 PBMCs x 765 genes, X scaled, .raw "
        "log-normalised, obs.bulk_labels (10 cell types); the source of pbmc700",
        "BSD-3-Clause (scanpy)",
        "Zheng GXY et al. Massively parallel digital transcriptional profiling of single cells. Nat Commun 8:14049 "
        "(2017); Wolf FA, Angerer P, Theis FJ. SCANPY. Genome Biol 19:15 (2018)",
        "10x Genomics Fresh 68k PBMCs (Donor A), reduced by scanpy (scanpy.datasets.pbmc68k_reduced)",
        (RemoteFile("cells/pbmc68k_reduced_processed.h5ad",
                    "e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f", 1_772_368,
                    "https://raw.githubusercontent.com/scverse/scanpy/f9c947769989018a9d8c69552a586a6d3e4bf6ff/src/scanpy/"
                    "datasets/"
                    "10x_pbmc68k_reduced.h5ad"),),
        reads="h5ad (not counts)",
    ),
    Dataset(
        "pbmc700", "cells", "700 PBMCs x 765 genes as integer raw counts, obs.bulk_labels = 10 cell types (the cell "
        "demo's data); counts = rint(expm1(raw.X) x obs.n_counts / 1e4) of pbmc68k-reduced",
        "BSD-3-Clause (scanpy)", "as pbmc68k-reduced",
        "converted from pbmc68k-reduced by biofm (biofm.datasets.convert.pbmc_counts)",
        convert="pbmc_counts", output="pbmc68k_700cells_counts.h5ad", derived_from=("pbmc68k-reduced",),
        reads="h5ad (counts)",
    ),
    Dataset(
        "mouse10k", "cells", "10,000 mouse cells x 1,000 genes, integer raw counts, no labels, duplicated gene "
        "symbols (Ensembl ids in var.gene_ids)",
        "BSD-3-Clause (scanpy)",
        "10x Genomics; Wolf FA, Angerer P, Theis FJ. SCANPY. Genome Biol 19:15 (2018)",
        "scanpy repository tests/_data/10x-10k-subset.zarr (10x Genomics data)",
        (RemoteFile("cells/mouse_10k_raw_counts.h5ad",
                    "9bb4d24d80ae1e616387fa6df6a54fabba980e75bdb652a9d1f328db45f8442f", 1_740_348),),
        mirror_only="the public original is a Zarr store of many chunk files in scanpy's test folder with no "
                    "recorded checksums; convert it once with anndata.read_zarr(...).write_h5ad(...)",
        reads="h5ad (counts)",
    ),
    Dataset(
        "pbmc200-cite", "cells", "200 human PBMCs x 16,727 genes, integer raw counts, CITE-seq protein counts in "
        "obsm['protein_expression'], no labels",
        "BSD-3-Clause (scvi-tools)",
        "Gayoso A et al. A Python library for probabilistic analysis of single-cell omics data. Nat Biotechnol "
        "40:163-166 (2022); 10x Genomics PBMC 10k protein v3",
        "10x Genomics pbmc_10k_protein_v3, via scvi-tools (GitHub YosefLab/scVI-data pbmc_10k_protein_v3.h5ad)",
        (RemoteFile("cells/pbmc_200cells_raw_counts_protein.h5ad",
                    "512fe360bd1cc79821f67959cc47e19b92bb7edbbb9351da5d1e9d70b35102a2", 2_064_068),),
        mirror_only="a 200-cell subset of scVI-data's pbmc_10k_protein_v3.h5ad (6,855 cells) whose cell selection "
                    "is not recorded, so it cannot be rebuilt from the public file",
        reads="h5ad (counts)",
    ),
    # ------------------------------------------------------------------------------------------- atac
    Dataset(
        "granja2019-bmmc-600", "atac", "600 human bone-marrow cells (6 types x 100) x 5,000 peaks, scATAC-seq "
        "integer counts; the fast fixture",
        "epiCHAOS code MIT; the study's data terms apply (GEO GSE139369)",
        "Granja JM et al. Single-cell multiomic analysis identifies regulatory programs in mixed-phenotype acute "
        "leukemia. Nat Biotechnol 37:1458-1465 (2019)",
        "GEO GSE139369, as subset in GitHub CompEpigen/epiCHAOS data/hemato_atac.rda "
        "@e6e7e68831b1dad4ad17e9e09cc9420963adce8e",
        (RemoteFile("atac/epichaos600_granja2019_bmmc_scatac.h5ad",
                    "cc58698b9202440e4a775e6d30f574e552da785f4b5774ad5420fe757f9c31eb", 780_415),),
        mirror_only=_RDA_REASON,
        reads="h5ad (counts)",
    ),
    Dataset(
        "granja2019-bmmc-14k", "atac", "14,125 human bone-marrow mononuclear cells x 10,000 peaks (500 bp, hg19), "
        "scATAC-seq counts, obs.cell_type (16 types), obs.batch (2 donors)",
        "epiCHAOS code MIT; the study's data terms apply (GEO GSE139369)",
        "Granja JM et al. Nat Biotechnol 37:1458-1465 (2019)",
        "GEO GSE139369, as subset in GitHub CompEpigen/epiCHAOS data/hemato.rda "
        "@6a299c5e9b1149094270505b8a7c28ac5b765590",
        (RemoteFile("atac/epichaos14k_granja2019_bmmc_scatac.h5ad",
                    "0b0c3abe41f25280dc808db5da1e9cfd593a67435e97c77807999c5b257b147d", 8_084_296),),
        mirror_only=_RDA_REASON,
        reads="h5ad (counts)",
    ),
    # ------------------------------------------------------------------------------------------- multiome
    Dataset(
        "snareseq-mouse-cortex", "multiome", "SNARE-seq adult mouse cortex: 10,309 cells, RNA (1,677 genes) + ATAC "
        "(25,734 peaks), obs.cell_type (23), obs.batch (12)",
        "scMoMaT code MIT; the study's data terms apply (GEO GSE126074)",
        "Chen S, Lake BB, Zhang K. High-throughput sequencing of the transcriptome and chromatin accessibility in "
        "the same cell. Nat Biotechnol 37:1452-1457 (2019)",
        "GEO GSE126074, via GitHub PeterZZQ/scMoMaT data/real/MOp_5batches/ @39fd0972d9e84e2cfbc9c1a8b3f67359b8b21ff3",
        (RemoteFile("multiome/scmomat_snareseq_mouse_cortex_rna_atac.h5mu",
                    "3059051a7e186e9bf4765982c5b442105e7e1b55255777e45ac0b70dbb41b12e", 9_113_422),),
        mirror_only="the public originals (scMoMaT's GxC1.npz / RxC1.npz sparse matrices, genes.txt, regions.txt, "
                    "meta_c1.csv) are not in the mirror, so neither their checksums nor a conversion could be "
                    "checked; assembled into one MuData once and kept in a mirror",
        reads="h5mu (rna, atac)",
    ),
    Dataset(
        "teaseq-pbmc", "multiome", "TEA-seq PBMCs: 1,262 cells, RNA (9,855 genes) + 46 surface proteins (ADT), "
        "obs.cell_type (11)",
        "Matilda Apache-2.0; the study's data terms apply (GEO GSE158013)",
        "Swanson E et al. Simultaneous trimodal single-cell measurement of transcripts, epitopes, and chromatin "
        "accessibility using TEA-seq. eLife 10:e63632 (2021)",
        "GEO GSE158013, via GitHub PYangLab/Matilda data/TEAseq/ @3125eb6e1a7c4e8b496c42dbfd8c5dc5350516c8",
        (RemoteFile("multiome/matilda_teaseq_pbmc_train_rna_adt.h5mu",
                    "b7d1a68d02740cd72fda0fe08786428518dbf0c71b70de0a4e78250609a53738", 3_913_324),),
        mirror_only="the public originals (Matilda's train_rna.h5 / train_adt.h5 dense HDF5 matrices and "
                    "train_cty.csv) are not in the mirror, so neither their checksums nor a conversion could be "
                    "checked; assembled into one MuData once and kept in a mirror",
        reads="h5mu (rna, adt)",
    ),
    # ------------------------------------------------------------------------------------------- text
    Dataset(
        "pubmedqa-pqal", "text", "PubMedQA PQA-L: 1,000 expert-labelled yes/no/maybe questions with their abstracts; "
        "test_ground_truth.json names the 500 official test ids",
        "MIT (PubMedQA)",
        "Jin Q, Dhingra B, Liu Z, Cohen W, Lu X. PubMedQA: A Dataset for Biomedical Research Question Answering. "
        "EMNLP-IJCNLP 2019, 2567-2577",
        "GitHub pubmedqa/pubmedqa data/",
        (RemoteFile("text/pubmedqa/ori_pqal.json",
                    "8b3276be8942ebbd77f3ddcda12c1749bf0e490045a736fd8438ee40cf37a41d", 2_584_787,
                    "https://raw.githubusercontent.com/pubmedqa/pubmedqa/1f00b98d5cc626844bf8c4ca513b6e62c40071ec/data/ori_pqal.json"),
         RemoteFile("text/pubmedqa/test_ground_truth.json",
                    "939fe566f09017d13b1ca64d2ddfee0bc2374b366048152997669cccedc44d51", 11_414,
                    "https://raw.githubusercontent.com/pubmedqa/pubmedqa/3e7616d288b52edaf38f5fd5c59821c7806bde86/data/test_ground_truth.json")),
        reads="JSON",
    ),
    Dataset(
        "pubmedqa", "text", "PubMedQA PQA-L as a task table (task `pubmedqa`): id, text (question + abstract without "
        "its conclusion), label (yes 552 / no 338 / maybe 110), split (500 official test ids)",
        "MIT (PubMedQA)", "as pubmedqa-pqal",
        "converted from pubmedqa-pqal by biofm (biofm.datasets.convert.pubmedqa_table)",
        convert="pubmedqa_table", output="pubmedqa.tsv.gz",
        output_sha256="dc3b4870fb51fe9dc7390e9214b9244e3aa8d6139f62413a451ab04eb19b4ff2",
        derived_from=("pubmedqa-pqal",), reads="TSV.gz",
    ),
    Dataset(
        "ncbi-disease", "text", "NCBI disease corpus: 793 PubMed abstracts with disease mentions (PubTator-style "
        "train / devel / test files)",
        "U.S. Government work, public domain (annotations); abstracts may carry their publishers' copyright",
        "Dogan RI, Leaman R, Lu Z. NCBI disease corpus. J Biomed Inform 47:1-10 (2014)",
        "NCBI, https://www.ncbi.nlm.nih.gov/CBBresearch/Dogan/DISEASE/ (via GitHub spyysalo/ncbi-disease)",
        tuple(RemoteFile(f"text/ncbi_disease/original-data/{split}/{file}", sha, size,
                         f"https://raw.githubusercontent.com/spyysalo/ncbi-disease/{commit}/original-data/{split}/{file}")
              for split, file, sha, size, commit in [
                  ("train", "NCBItrainset_corpus.txt",
                   "f311381b28a6d0f641f57f4a963bb83619c2bdec5cd9caabb1381f894d5db817", 1_045_967,
                   "e5d393083f47e51f81e4ad0da66b8054b7e455e5"),
                  ("devel", "NCBIdevelopset_corpus.txt",
                   "02db559974624ae9cbe6cd95d64d953e6926bb63afb6b25b63e53bd8b41a4b55", 178_373, "master"),
                  ("test", "NCBItestset_corpus.txt",
                   "61c8050bf6979ef7b943ec1158dfc03b651ea3367d4c37356f9de4841e85c9a3", 189_219,
                   "95a4ae5cca3a34f7715fdc792fc69f851c7b32df")]),
        reads="PubTator text",
    ),
    Dataset(
        "bc5cdr", "text", "BioCreative V CDR corpus: 1,500 PubMed abstracts (500 train / 500 dev / 500 test) with "
        "chemical and disease mentions and chemical-induced-disease relations",
        "NCBI public-domain notice (annotations); abstracts may carry their publishers' copyright",
        "Li J et al. BioCreative V CDR task corpus: a resource for chemical disease relation extraction. "
        "Database 2016:baw068",
        "BioCreative V CDR (NCBI), via GitHub cryptoradon/biomedRelExt",
        (RemoteFile("text/bc5cdr/CDR_TrainingSet.PubTator.txt",
                    "fb00f93b06ca946dac9d909245679493a22ff742c70df2448c4bab2ab1a5140d", 1_129_997,
                    "https://raw.githubusercontent.com/cryptoradon/biomedRelExt/e42e94570138158963ae4696298bf09232071740/"
                    "CDR_Data/CDR.Corpus.v010516/CDR_TrainingSet.PubTator.txt"),
         RemoteFile("text/bc5cdr/CDR_DevelopmentSet.PubTator.txt",
                    "9e18d8e700168887a7919e62f67ac2ce2357e3f409a48ee992906abdd80fe3e5", 1_127_990),
         RemoteFile("text/bc5cdr/CDR_TestSet.PubTator.txt",
                    "a3c48d5f35bdfce20c2371778abedc9fd24d1da092207072e5181ad53c8d0e2f", 1_168_687)),
        mirror_only="development and test files: no public copy byte-identical to these was found (BioCreative's "
                    "CDR_Data.zip holds them, unchecksummed here); the training file downloads",
        reads="PubTator text",
    ),
    Dataset(
        "pubmed-abstracts", "text", "2,292 PubMed titles + abstracts for pretraining (the text demo's corpus): "
        "ncbi-disease and bc5cdr, each PubMed id and text once, every PubMedQA article left out",
        "public-domain annotations; abstracts may carry their publishers' copyright (research use)",
        "as ncbi-disease and bc5cdr",
        "converted from ncbi-disease and bc5cdr by biofm (biofm.datasets.convert.pubmed_abstracts)",
        convert="pubmed_abstracts", output="abstracts.jsonl.gz",
        output_sha256="31a77dfa5f4554670ea588e7e0a23a700540b5ad59bf762a253bcf80af14a6f7",
        derived_from=("ncbi-disease", "bc5cdr", "pubmedqa-pqal"), reads="JSONL.gz",
    ),
]

DATASETS: dict[str, Dataset] = {d.name: d for d in _ENTRIES}
