<#
.SYNOPSIS
    Turns platyPS-format markdown (schema 2.0.0) into the MAML help file Get-Help reads for a binary module, and
    about_*.md topics into about_*.help.txt.
.DESCRIPTION
    platyPS is not available where this module is built, so this script does its one job in plain PowerShell:

      <Cmdlet>.md  (front matter "schema: 2.0.0")  ->  <OutputPath>/<ModuleName>.dll-Help.xml (one file, all cmdlets)
      about_<Topic>.md                              ->  <OutputPath>/about_<Topic>.help.txt

    The markdown layout is platyPS's: YAML front matter; "# Name"; "## SYNOPSIS"; "## SYNTAX" with "### <Set>" and a
    code block per set; "## DESCRIPTION"; "## EXAMPLES" with "### Example N: title", a ```powershell block, optional
    ```output blocks and remarks; "## PARAMETERS" with "### -Name", a description and one ```yaml block per parameter
    set the parameter belongs to; "### CommonParameters"; "## INPUTS"; "## OUTPUTS"; "## NOTES"; "## RELATED LINKS".
    A module landing page (front matter with "Module Guid") is skipped.

    The MAML syntax blocks are built from the parameters' yaml (as platyPS does), so the SYNTAX code blocks are only
    checked (each names the command), never parsed for parameters.

    Anything malformed throws a FormatException whose message starts with "<file>:<line>:".
.EXAMPLE
    ./tools/ConvertTo-MamlHelp.ps1 -DocsPath docs/en-US -OutputPath out/Gallium.PciPassthrough/en-US -ModuleName Gallium.PciPassthrough
#>
[CmdletBinding(DefaultParameterSetName = 'Write')]
param(
    [Parameter(Mandatory)] [string] $DocsPath,
    [Parameter(Mandatory, ParameterSetName = 'Write')] [string] $OutputPath,
    [Parameter(Mandatory, ParameterSetName = 'Write')] [string] $ModuleName,
    # Write the FileInfo of every file produced to the pipeline.
    [Parameter(ParameterSetName = 'Write')] [switch] $PassThru,
    # Write nothing; return the parsed cmdlet pages (Name, Synopsis, Sets, Parameters with their per-set yaml, Examples,
    # Inputs, Outputs, ...) so tests can hold the markdown against the cmdlets' real metadata.
    [Parameter(Mandatory, ParameterSetName = 'Model')] [switch] $AsModel
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$MamlNs = 'http://schemas.microsoft.com/maml/2004/10'
$CommandNs = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
$DevNs = 'http://schemas.microsoft.com/maml/dev/2004/10'
$MsHelpNs = 'http://msdn.microsoft.com/mshelp'
$AboutWidth = 80

#region Errors and markdown blocks

function Stop-Malformed([string] $File, [int] $Line, [string] $Message) {
    throw [System.FormatException]::new("${File}:${Line}: $Message")
}

# Characters XML 1.0 cannot carry; caught here so the error names the markdown line, not the XML writer.
$InvalidXmlChar = [regex] '[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]'

<#
Splits a markdown file into front matter and a flat list of blocks, each remembering its first line:
  Heading (Level, Text) | Code (Lang, Text) | Paragraph (Text) | ListItem (Marker, Text) | Table (Rows) | Rule
#>
function Read-MarkdownFile([string] $Path) {
    $name = [System.IO.Path]::GetFileName($Path)
    $text = [System.IO.File]::ReadAllText($Path)
    $lines = $text -split '\r?\n'
    for ($n = 0; $n -lt $lines.Count; $n++) {
        if ($InvalidXmlChar.IsMatch($lines[$n])) { Stop-Malformed $name ($n + 1) 'contains a control character that help files cannot hold.' }
    }

    $front = [ordered]@{}
    $i = 0
    if ($lines.Count -gt 0 -and $lines[0].Trim() -eq '---') {
        $i = 1
        $closed = $false
        while ($i -lt $lines.Count) {
            $l = $lines[$i]
            if ($l.Trim() -eq '---') { $closed = $true; $i++; break }
            if ($l.Trim() -ne '') {
                if ($l -notmatch '^([A-Za-z][\w .-]*):\s*(.*)$') { Stop-Malformed $name ($i + 1) "front matter line is not 'key: value': '$l'." }
                $front[$Matches[1].Trim()] = $Matches[2].Trim()
            }
            $i++
        }
        if (-not $closed) { Stop-Malformed $name 1 "front matter opened with '---' is never closed." }
    }

    $blocks = [System.Collections.Generic.List[object]]::new()
    $para = $null
    # Dot-sourced so that it clears this function's $para.
    $closeParagraph = { if ($null -ne $para) { $blocks.Add($para); $para = $null } }
    while ($i -lt $lines.Count) {
        $l = $lines[$i]
        $lineNo = $i + 1
        if ($l -match '^(\s*)(`{3,}|~{3,})\s*([\w.+-]*)\s*$') {
            . $closeParagraph
            $indent = $Matches[1].Length
            $fence = $Matches[2]
            $lang = $Matches[3]
            $body = [System.Collections.Generic.List[string]]::new()
            $i++
            $closed = $false
            while ($i -lt $lines.Count) {
                if ($lines[$i] -match "^\s*$([regex]::Escape([string]$fence[0])){$($fence.Length),}\s*$") { $closed = $true; break }
                $body.Add($(if ($indent -gt 0 -and $lines[$i].Length -ge $indent -and $lines[$i].Substring(0, $indent).Trim() -eq '') { $lines[$i].Substring($indent) } else { $lines[$i] }))
                $i++
            }
            if (-not $closed) { Stop-Malformed $name $lineNo "code block opened with '$fence' is never closed." }
            $blocks.Add([pscustomobject]@{ Kind = 'Code'; Line = $lineNo; Lang = $lang.ToLowerInvariant(); Text = ($body -join "`n") })
            $i++
            continue
        }
        if ($l -match '^(#{1,6})\s+(.*?)\s*#*\s*$') {
            . $closeParagraph
            $blocks.Add([pscustomobject]@{ Kind = 'Heading'; Line = $lineNo; Level = $Matches[1].Length; Text = $Matches[2].Trim() })
            $i++
            continue
        }
        if ($l.Trim() -eq '') { . $closeParagraph; $i++; continue }
        if ($l -match '^\s*\|') {
            . $closeParagraph
            $rows = [System.Collections.Generic.List[object]]::new()
            $start = $lineNo
            while ($i -lt $lines.Count -and $lines[$i] -match '^\s*\|') {
                $cells = Split-TableRow $lines[$i]
                $rows.Add([pscustomobject]@{ Line = $i + 1; Cells = $cells })
                $i++
            }
            if ($rows.Count -lt 2 -or ($rows[1].Cells | Where-Object { $_ -notmatch '^:?-{3,}:?$' })) {
                Stop-Malformed $name ($start + 1) 'a table needs a header row and a separator row of dashes (| --- | --- |).'
            }
            $width = $rows[0].Cells.Count
            foreach ($r in $rows) {
                if ($r.Cells.Count -ne $width) { Stop-Malformed $name $r.Line "table row has $($r.Cells.Count) cells; the header has $width." }
            }
            $blocks.Add([pscustomobject]@{ Kind = 'Table'; Line = $start; Header = $rows[0].Cells; Rows = @($rows | Select-Object -Skip 2 | ForEach-Object { , $_.Cells }) })
            continue
        }
        if ($l -match '^(\s*)([-*+]|\d+[.)])\s+(.*)$') {
            . $closeParagraph
            $para = [pscustomobject]@{ Kind = 'ListItem'; Line = $lineNo; Indent = $Matches[1].Length; Marker = $Matches[2]; Text = $Matches[3].Trim() }
            $i++
            continue
        }
        if ($l -match '^\s*(-{3,}|\*{3,}|_{3,})\s*$') { . $closeParagraph; $blocks.Add([pscustomobject]@{ Kind = 'Rule'; Line = $lineNo }); $i++; continue }
        if ($null -eq $para) { $para = [pscustomobject]@{ Kind = 'Paragraph'; Line = $lineNo; Text = $l.Trim() } }
        else { $para.Text += ' ' + $l.Trim() }
        $i++
    }
    . $closeParagraph
    [pscustomobject]@{ File = $name; Path = $Path; Front = $front; Blocks = $blocks.ToArray() }
}

function Split-TableRow([string] $Row) {
    $t = $Row.Trim()
    if ($t.StartsWith('|')) { $t = $t.Substring(1) }
    if ($t.EndsWith('|') -and -not $t.EndsWith('\|')) { $t = $t.Substring(0, $t.Length - 1) }
    # A pipe escaped as \| (or inside `code`) belongs to the cell.
    $cells = [System.Collections.Generic.List[string]]::new()
    $sb = [System.Text.StringBuilder]::new()
    $inCode = $false
    for ($k = 0; $k -lt $t.Length; $k++) {
        $c = $t[$k]
        if ($c -eq '\' -and $k + 1 -lt $t.Length -and $t[$k + 1] -eq '|') { [void]$sb.Append('|'); $k++; continue }
        if ($c -eq '`') { $inCode = -not $inCode }
        if ($c -eq '|' -and -not $inCode) { $cells.Add($sb.ToString().Trim()); [void]$sb.Clear(); continue }
        [void]$sb.Append($c)
    }
    $cells.Add($sb.ToString().Trim())
    , $cells.ToArray()
}

# Inline markdown to plain text: links keep their text (and an absolute URL), emphasis and code marks go.
function ConvertTo-PlainText([string] $Text) {
    # Code spans are set aside first, so that nothing inside them (a * wildcard, a _ in a name) reads as emphasis.
    $spans = [System.Collections.Generic.List[string]]::new()
    $t = [regex]::Replace($Text, '(`+)(.+?)\1', {
            param($m)
            $spans.Add($m.Groups[2].Value.Trim())
            "`u{E000}$($spans.Count - 1)`u{E001}"
        })
    $t = [regex]::Replace($t, '!?\[([^\]]*)\]\(([^)\s]*)\)', {
            param($m)
            $label = $m.Groups[1].Value; $uri = $m.Groups[2].Value
            if ($uri -match '^https?://' -and $uri -ne $label) { "$label ($uri)" } else { $label }
        })
    $t = [regex]::Replace($t, '<(https?://[^>]+)>', '$1')
    # Emphasis only where markdown would see it: opened after a space or bracket, closed before one or punctuation.
    $open = '(?<=^|[\s(\[{"''])'
    $close = '(?=$|[\s)\]}.,;:!?"''])'
    $t = [regex]::Replace($t, "$open(\*\*|__)(?=\S)(.+?)(?<=\S)\1$close", '$2')
    $t = [regex]::Replace($t, "$open([*_])(?=\S)(.+?)(?<=\S)\1$close", '$2')
    $t = $t -replace '\\([\\`*_{}\[\]()#+\-.!<>|])', '$1'
    $t = $t -replace '<br\s*/?>', ' '
    [regex]::Replace($t, "`u{E000}(\d+)`u{E001}", { param($m) $spans[[int]$m.Groups[1].Value] })
}

#endregion

#region Text layout (about topics, and tables/lists inside MAML paragraphs)

function Format-Wrapped([string] $Text, [int] $Indent, [int] $Width, [int] $HangingIndent = -1) {
    if ($HangingIndent -lt 0) { $HangingIndent = $Indent }
    $words = $Text -split '\s+' | Where-Object { $_ -ne '' }
    $out = [System.Collections.Generic.List[string]]::new()
    $line = ''
    $pad = ' ' * $Indent
    foreach ($w in $words) {
        if ($line -eq '') { $line = $pad + $w; continue }
        if ($line.Length + 1 + $w.Length -gt $Width) {
            $out.Add($line)
            $pad = ' ' * $HangingIndent
            $line = $pad + $w
        } else { $line += ' ' + $w }
    }
    if ($line -ne '') { $out.Add($line) }
    $out.ToArray()
}

# A table as text: aligned columns when it fits, else one record per row (first cell, then "Header: value" lines).
function Format-TextTable($Block, [int] $Indent, [int] $Width) {
    $header = @($Block.Header | ForEach-Object { ConvertTo-PlainText $_ })
    $rows = @($Block.Rows | ForEach-Object { , @($_ | ForEach-Object { ConvertTo-PlainText $_ }) })
    $widths = for ($c = 0; $c -lt $header.Count; $c++) {
        (@($header[$c]) + @($rows | ForEach-Object { $_[$c] }) | Measure-Object -Maximum -Property Length).Maximum
    }
    $total = $Indent + ($widths | Measure-Object -Sum).Sum + 2 * ($header.Count - 1)
    $pad = ' ' * $Indent
    $out = [System.Collections.Generic.List[string]]::new()
    if ($total -le $Width) {
        $fmt = { param($cells) $pad + ((0..($cells.Count - 1) | ForEach-Object { $cells[$_].PadRight($widths[$_]) }) -join '  ').TrimEnd() }
        $out.Add((& $fmt $header))
        $out.Add((& $fmt @($widths | ForEach-Object { '-' * $_ })))
        foreach ($r in $rows) { $out.Add((& $fmt $r)) }
        return $out.ToArray()
    }
    $first = $true
    foreach ($r in $rows) {
        if (-not $first) { $out.Add('') }
        $first = $false
        $out.Add($pad + $r[0])
        for ($c = 1; $c -lt $header.Count; $c++) {
            if ($r[$c] -eq '') { continue }
            $label = "$($header[$c]): "
            $out.AddRange([string[]](Format-Wrapped ($label + $r[$c]) ($Indent + 4) $Width ($Indent + 4 + [Math]::Min($label.Length, 16))))
        }
    }
    $out.ToArray()
}

#endregion

#region Cmdlet markdown -> model

$SectionOrder = @('SYNOPSIS', 'SYNTAX', 'DESCRIPTION', 'EXAMPLES', 'PARAMETERS', 'INPUTS', 'OUTPUTS', 'NOTES', 'RELATED LINKS')
$RequiredSections = @('SYNOPSIS', 'SYNTAX', 'DESCRIPTION', 'EXAMPLES', 'PARAMETERS', 'INPUTS', 'OUTPUTS')
$YamlKeys = @('Type', 'Parameter Sets', 'Aliases', 'Accepted values', 'Required', 'Position', 'Default value', 'Accept pipeline input', 'Accept wildcard characters')
$RequiredYamlKeys = @('Type', 'Parameter Sets', 'Aliases', 'Required', 'Position', 'Default value', 'Accept pipeline input', 'Accept wildcard characters')

# Blocks to MAML paragraph strings: prose is reflowed by Get-Help, so each block is one string; lists, tables and code keep their lines.
function ConvertTo-Paragraphs($Blocks, [string] $File) {
    $paras = [System.Collections.Generic.List[string]]::new()
    foreach ($b in $Blocks) {
        switch ($b.Kind) {
            'Paragraph' { $paras.Add((ConvertTo-PlainText $b.Text)) }
            'ListItem' {
                $marker = if ($b.Marker -match '^\d') { $b.Marker } else { '-' }
                $paras.Add(((' ' * $b.Indent) + "$marker " + (ConvertTo-PlainText $b.Text)))
            }
            'Code' { $paras.Add(((($b.Text -split "`n") | ForEach-Object { "    $_" }) -join "`n")) }
            'Table' { $paras.Add(((Format-TextTable $b 0 100) -join "`n")) }
            'Rule' { }
            default { Stop-Malformed $File $b.Line "unexpected $($b.Kind) here." }
        }
    }
    $paras.ToArray()
}

# Get-Help shows an example's commands and output as one block, so each statement the admin types gets a "PS> " prompt
# (continuation lines do not). A block whose author already wrote prompts is left alone.
function Add-Prompt([string] $Code) {
    $lines = $Code -split "`n"
    if ($lines -match '^PS[^>]*> ') { return $Code }
    $continues = $false
    $out = foreach ($l in $lines) {
        if ($continues -or $l.Trim() -eq '' -or $l -match '^\s' -or $l -match '^[})\]|.]') { $l } else { "PS> $l" }
        $continues = $l -match '[`|{(\[,=]\s*$'
    }
    $out -join "`n"
}

function Read-YamlBlock($Block, [string] $File, [string] $Parameter) {
    $values = [ordered]@{}
    $n = $Block.Line
    foreach ($l in $Block.Text -split "`n") {
        $n++
        if ($l.Trim() -eq '') { continue }
        if ($l -notmatch '^([A-Za-z][A-Za-z ]*?):\s*(.*?)\s*$') { Stop-Malformed $File $n "parameter -${Parameter}: yaml line is not 'Key: value': '$l'." }
        $key = $Matches[1]; $value = $Matches[2]
        $known = $YamlKeys | Where-Object { $_ -eq $key }
        if (-not $known) { Stop-Malformed $File $n "parameter -${Parameter}: unknown yaml key '$key' (expected one of: $($YamlKeys -join ', '))." }
        if ($values.Contains($known)) { Stop-Malformed $File $n "parameter -${Parameter}: yaml key '$key' given twice." }
        $values[$known] = [pscustomobject]@{ Value = $value; Line = $n }
    }
    foreach ($k in $RequiredYamlKeys) {
        if (-not $values.Contains($k)) { Stop-Malformed $File $Block.Line "parameter -${Parameter}: yaml block lacks '${k}:'." }
    }
    $v = { param($k) $values[$k].Value }
    $line = { param($k) $values[$k].Line }

    if ((& $v 'Type') -notmatch '^[\w.`\[\],]+$') { Stop-Malformed $File (& $line 'Type') "parameter -${Parameter}: Type '$(& $v 'Type')' is not a type name." }
    foreach ($k in 'Required', 'Accept wildcard characters') {
        if ((& $v $k) -notmatch '^(True|False)$') { Stop-Malformed $File (& $line $k) "parameter -${Parameter}: '$k' must be True or False, not '$(& $v $k)'." }
    }
    if ((& $v 'Position') -notmatch '^(Named|\d+)$') { Stop-Malformed $File (& $line 'Position') "parameter -${Parameter}: Position must be Named or a number, not '$(& $v 'Position')'." }
    $pipeline = & $v 'Accept pipeline input'
    $byValue = $false; $byName = $false
    if ($pipeline -match '^True \(([^)]*)\)$') {
        foreach ($kind in $Matches[1] -split ',\s*') {
            switch ($kind) {
                'ByValue' { $byValue = $true }
                'ByPropertyName' { $byName = $true }
                default { Stop-Malformed $File (& $line 'Accept pipeline input') "parameter -${Parameter}: unknown pipeline input kind '$kind' (ByValue, ByPropertyName)." }
            }
        }
    } elseif ($pipeline -ne 'False') {
        Stop-Malformed $File (& $line 'Accept pipeline input') "parameter -${Parameter}: 'Accept pipeline input' must be False or True (ByValue[, ByPropertyName]), not '$pipeline'."
    }
    $sets = @((& $v 'Parameter Sets') -split ',\s*' | Where-Object { $_ -ne '' })
    if ($sets.Count -eq 0) { Stop-Malformed $File (& $line 'Parameter Sets') "parameter -${Parameter}: 'Parameter Sets' is empty (use (All))." }
    $aliases = @((& $v 'Aliases') -split ',\s*' | Where-Object { $_ -ne '' -and $_ -ne 'None' })
    $accepted = @(if ($values.Contains('Accepted values')) { (& $v 'Accepted values') -split ',\s*' | Where-Object { $_ -ne '' } })

    [pscustomobject]@{
        Line = $Block.Line; Type = & $v 'Type'; Sets = $sets; Aliases = $aliases; AcceptedValues = $accepted
        Required = (& $v 'Required') -eq 'True'; Position = & $v 'Position'; Default = & $v 'Default value'
        ByValue = $byValue; ByPropertyName = $byName; PipelineInput = $pipeline
        Globbing = (& $v 'Accept wildcard characters') -eq 'True'
    }
}

function Read-CmdletDoc($Doc) {
    $file = $Doc.File
    $blocks = $Doc.Blocks
    if ($Doc.Front['schema'] -ne '2.0.0') {
        Stop-Malformed $file 1 "front matter must say 'schema: 2.0.0' (platyPS cmdlet help); got '$($Doc.Front['schema'])'."
    }
    if ($blocks.Count -eq 0 -or $blocks[0].Kind -ne 'Heading' -or $blocks[0].Level -ne 1) {
        Stop-Malformed $file $(if ($blocks.Count) { $blocks[0].Line } else { 1 }) "the first thing after the front matter must be '# <Command-Name>'."
    }
    $name = $blocks[0].Text
    $expected = [System.IO.Path]::GetFileNameWithoutExtension($file)
    if ($name -ne $expected) { Stop-Malformed $file $blocks[0].Line "the title '# $name' does not match the file name '$expected'." }
    if ($name -notmatch '^[A-Za-z]+-[A-Za-z0-9]+$') { Stop-Malformed $file $blocks[0].Line "'$name' is not a Verb-Noun command name." }

    # Cut into H2 sections.
    $sections = [ordered]@{}
    $current = $null
    $lastIndex = -1
    for ($k = 1; $k -lt $blocks.Count; $k++) {
        $b = $blocks[$k]
        if ($b.Kind -eq 'Heading' -and $b.Level -le 2) {
            if ($b.Level -eq 1) { Stop-Malformed $file $b.Line "a second '# ' title; one command per file." }
            $title = $b.Text.ToUpperInvariant()
            $index = [array]::IndexOf($SectionOrder, $title)
            if ($index -lt 0) { Stop-Malformed $file $b.Line "unknown section '## $($b.Text)' (expected: $($SectionOrder -join ', '))." }
            if ($sections.Contains($title)) { Stop-Malformed $file $b.Line "section '## $title' appears twice." }
            if ($index -lt $lastIndex) { Stop-Malformed $file $b.Line "section '## $title' is out of order (platyPS order: $($SectionOrder -join ', '))." }
            $lastIndex = $index
            $current = [pscustomobject]@{ Line = $b.Line; Blocks = [System.Collections.Generic.List[object]]::new() }
            $sections[$title] = $current
            continue
        }
        if ($null -eq $current) { Stop-Malformed $file $b.Line "text before the first '## ' section." }
        $current.Blocks.Add($b)
    }
    foreach ($s in $RequiredSections) {
        if (-not $sections.Contains($s)) { Stop-Malformed $file $blocks[0].Line "missing section '## $s'." }
    }

    # Split a section into its H3 subsections; text before the first H3 is returned as Preamble.
    $subsections = {
        param($section, [string] $what)
        $items = [System.Collections.Generic.List[object]]::new()
        $pre = [System.Collections.Generic.List[object]]::new()
        $cur = $null
        foreach ($b in $section.Blocks) {
            if ($b.Kind -eq 'Heading') {
                if ($b.Level -ne 3) { Stop-Malformed $file $b.Line "expected a '### ' heading ($what), got level $($b.Level)." }
                $cur = [pscustomobject]@{ Title = $b.Text; Line = $b.Line; Blocks = [System.Collections.Generic.List[object]]::new() }
                $items.Add($cur)
                continue
            }
            if ($null -eq $cur) { $pre.Add($b) } else { $cur.Blocks.Add($b) }
        }
        [pscustomobject]@{ Preamble = $pre.ToArray(); Items = $items.ToArray() }
    }
    $noHeadings = {
        param($section, [string] $title)
        foreach ($b in $section.Blocks) { if ($b.Kind -eq 'Heading') { Stop-Malformed $file $b.Line "no headings allowed inside '## $title'." } }
    }

    # SYNOPSIS
    & $noHeadings $sections['SYNOPSIS'] 'SYNOPSIS'
    $synopsis = @(ConvertTo-Paragraphs $sections['SYNOPSIS'].Blocks $file)
    if ($synopsis.Count -eq 0 -or ($synopsis -join '').Trim() -eq '' -or $synopsis -match '^\{\{') {
        Stop-Malformed $file $sections['SYNOPSIS'].Line 'the synopsis is empty (or still a platyPS {{ placeholder }}).'
    }

    # SYNTAX: one code block per parameter set; the set names are what the parameters' yaml refers to.
    $syntax = & $subsections $sections['SYNTAX'] 'a parameter set'
    if ($syntax.Preamble.Count) { Stop-Malformed $file $syntax.Preamble[0].Line "text before the first '### <ParameterSet>' in SYNTAX." }
    if ($syntax.Items.Count -eq 0) { Stop-Malformed $file $sections['SYNTAX'].Line "SYNTAX needs at least one '### <ParameterSet>' with a code block." }
    $sets = foreach ($item in $syntax.Items) {
        $setName = $item.Title -replace '\s*\(Default\)\s*$', ''
        $isDefault = $item.Title -match '\(Default\)\s*$'
        $code = @($item.Blocks | Where-Object Kind -eq 'Code')
        if ($code.Count -ne 1 -or $item.Blocks.Count -ne 1) { Stop-Malformed $file $item.Line "syntax set '$setName' must hold exactly one code block." }
        if ($code[0].Text.Trim() -notmatch "^$([regex]::Escape($name))(\s|$)") { Stop-Malformed $file $code[0].Line "syntax set '$setName' does not start with the command name $name." }
        [pscustomobject]@{ Name = $setName; IsDefault = $isDefault; Line = $item.Line }
    }
    $sets = @($sets)
    $dupSet = $sets | Group-Object Name | Where-Object Count -gt 1 | Select-Object -First 1
    if ($dupSet) { Stop-Malformed $file $dupSet.Group[1].Line "parameter set '$($dupSet.Name)' is listed twice in SYNTAX." }

    # DESCRIPTION
    & $noHeadings $sections['DESCRIPTION'] 'DESCRIPTION'
    $description = @(ConvertTo-Paragraphs $sections['DESCRIPTION'].Blocks $file)
    if ($description.Count -eq 0 -or $description[0] -match '^\{\{') { Stop-Malformed $file $sections['DESCRIPTION'].Line 'the description is empty (or still a platyPS {{ placeholder }}).' }

    # EXAMPLES: the command(s) and any output are the example's code, the prose its remarks.
    $ex = & $subsections $sections['EXAMPLES'] 'an example'
    if ($ex.Preamble.Count) { Stop-Malformed $file $ex.Preamble[0].Line "text before the first '### Example' in EXAMPLES." }
    if ($ex.Items.Count -eq 0) { Stop-Malformed $file $sections['EXAMPLES'].Line "EXAMPLES needs at least one '### Example 1: <title>'." }
    $examples = foreach ($item in $ex.Items) {
        $commands = @($item.Blocks | Where-Object { $_.Kind -eq 'Code' -and $_.Lang -in @('powershell', 'pwsh', 'ps1', 'ps', '') })
        if ($commands.Count -eq 0) { Stop-Malformed $file $item.Line "example '$($item.Title)' has no ```powershell code block." }
        $codeParts = foreach ($b in $item.Blocks | Where-Object Kind -eq 'Code') {
            if ($b.Lang -in @('powershell', 'pwsh', 'ps1', 'ps', '')) { Add-Prompt $b.Text } else { $b.Text }
        }
        $remarkBlocks = @($item.Blocks | Where-Object Kind -ne 'Code')
        [pscustomobject]@{
            Title = ConvertTo-PlainText $item.Title
            Code = ($codeParts -join "`n`n")
            Remarks = @(ConvertTo-Paragraphs $remarkBlocks $file)
        }
    }

    # PARAMETERS
    $ps = & $subsections $sections['PARAMETERS'] 'a parameter'
    if ($ps.Preamble.Count) { Stop-Malformed $file $ps.Preamble[0].Line "text before the first '### -Parameter' in PARAMETERS." }
    $parameters = [System.Collections.Generic.List[object]]::new()
    $hasCommon = $false
    foreach ($item in $ps.Items) {
        if ($item.Title -eq 'CommonParameters') { $hasCommon = $true; continue }
        if ($item.Title -notmatch '^-([A-Za-z_][A-Za-z0-9_]*)$') { Stop-Malformed $file $item.Line "parameter heading must be '### -Name' or '### CommonParameters', not '### $($item.Title)'." }
        $pname = $Matches[1]
        if ($parameters | Where-Object Name -eq $pname) { Stop-Malformed $file $item.Line "parameter -$pname is documented twice." }
        $yamlBlocks = @($item.Blocks | Where-Object { $_.Kind -eq 'Code' -and $_.Lang -eq 'yaml' })
        if ($yamlBlocks.Count -eq 0) { Stop-Malformed $file $item.Line "parameter -$pname has no ```yaml block (Type, Parameter Sets, Required, ...)." }
        $descBlocks = @($item.Blocks | Where-Object { -not ($_.Kind -eq 'Code' -and $_.Lang -eq 'yaml') })
        $desc = @(ConvertTo-Paragraphs $descBlocks $file)
        if ($desc.Count -eq 0 -or ($desc -join '').Trim() -eq '' -or $desc[0] -match '^\{\{') { Stop-Malformed $file $item.Line "parameter -$pname has no description." }
        $variants = @($yamlBlocks | ForEach-Object { Read-YamlBlock $_ $file $pname })
        foreach ($y in $variants) {
            foreach ($s in $y.Sets) {
                if ($s -ne '(All)' -and -not ($sets | Where-Object Name -eq $s)) {
                    Stop-Malformed $file $y.Line "parameter -${pname} names parameter set '$s', which SYNTAX does not list ($(($sets.Name) -join ', '))."
                }
            }
            if ($y.Type -ne $variants[0].Type) { Stop-Malformed $file $y.Line "parameter -${pname}: Type differs between its yaml blocks." }
        }
        $parameters.Add([pscustomobject]@{ Name = $pname; Line = $item.Line; Description = $desc; Variants = $variants })
    }
    if ($parameters.Count -eq 0 -and -not $hasCommon) { Stop-Malformed $file $sections['PARAMETERS'].Line 'PARAMETERS lists nothing (not even ### CommonParameters).' }
    if (-not $hasCommon) { Stop-Malformed $file $sections['PARAMETERS'].Line "PARAMETERS lacks '### CommonParameters' (every cmdlet has them)." }

    # INPUTS / OUTPUTS: "### TypeName" then what it means.
    $typed = {
        param([string] $title)
        if (-not $sections.Contains($title)) { return @() }
        $t = & $subsections $sections[$title] 'a type name'
        if ($t.Preamble.Count) { Stop-Malformed $file $t.Preamble[0].Line "text before the first '### <TypeName>' in $title." }
        if ($t.Items.Count -eq 0) { Stop-Malformed $file $sections[$title].Line "$title lists no type (write '### None' when there is none)." }
        foreach ($item in $t.Items) {
            if ($item.Title -notmatch '^[\w.`\[\],]+$') { Stop-Malformed $file $item.Line "'### $($item.Title)' in $title is not a type name." }
            [pscustomobject]@{ TypeName = $item.Title; Description = @(ConvertTo-Paragraphs $item.Blocks $file) }
        }
    }
    $inputs = @(& $typed 'INPUTS')
    $outputs = @(& $typed 'OUTPUTS')

    $notes = @()
    if ($sections.Contains('NOTES')) {
        & $noHeadings $sections['NOTES'] 'NOTES'
        $notes = @(ConvertTo-Paragraphs $sections['NOTES'].Blocks $file)
    }

    $links = @()
    if ($sections.Contains('RELATED LINKS')) {
        & $noHeadings $sections['RELATED LINKS'] 'RELATED LINKS'
        $links = foreach ($b in $sections['RELATED LINKS'].Blocks) {
            if ($b.Kind -notin 'Paragraph', 'ListItem') { Stop-Malformed $file $b.Line 'RELATED LINKS holds only [text](uri) links.' }
            $found = [regex]::Matches($b.Text, '\[([^\]]+)\]\(([^)\s]*)\)')
            $rest = [regex]::Replace($b.Text, '\[([^\]]+)\]\(([^)\s]*)\)', '').Trim()
            if ($found.Count -eq 0 -or $rest -ne '') { Stop-Malformed $file $b.Line "RELATED LINKS line is not a [text](uri) link: '$($b.Text)'." }
            foreach ($m in $found) {
                $uri = $m.Groups[2].Value
                # Only absolute URLs are useful to Get-Help -Online; a link to a sibling .md is a topic name.
                [pscustomobject]@{ Text = $m.Groups[1].Value; Uri = $(if ($uri -match '^https?://') { $uri } else { '' }) }
            }
        }
    }

    $online = if ($Doc.Front.Contains('online version')) { $Doc.Front['online version'] } else { '' }
    if ($online -and $online -match '^https?://' -and -not ($links | Where-Object Uri -eq $online)) {
        # Get-Help -Online opens the first link with a URL: platyPS puts the online version first.
        $links = @([pscustomobject]@{ Text = 'Online Version:'; Uri = $online }) + @($links)
    }

    [pscustomobject]@{
        Name = $name; File = $file; Synopsis = $synopsis; Description = $description; Sets = $sets
        Parameters = $parameters.ToArray(); Examples = @($examples); Inputs = $inputs; Outputs = $outputs
        Notes = $notes; Links = @($links)
    }
}

#endregion

#region MAML writer

function Add-Element($Parent, [string] $Prefix, [string] $Name, [string] $Ns, [string] $Text = '') {
    $e = $Parent.OwnerDocument.CreateElement($Prefix, $Name, $Ns)
    # No text node for empty text: one would make the writer treat the parent as mixed content and stop indenting.
    if ($Text -ne '') { $e.InnerText = $Text }
    [void]$Parent.AppendChild($e)
    $e
}

function Add-Paragraphs($Parent, [string[]] $Paragraphs) {
    if (-not $Paragraphs -or $Paragraphs.Count -eq 0) { [void](Add-Element $Parent 'maml' 'para' $MamlNs ''); return }
    foreach ($p in $Paragraphs) { [void](Add-Element $Parent 'maml' 'para' $MamlNs $p) }
}

function Add-Description($Parent, [string[]] $Paragraphs) {
    $d = Add-Element $Parent 'maml' 'description' $MamlNs
    Add-Paragraphs $d $Paragraphs
}

function Get-MamlType([string] $Type) {
    if ($Type -in 'switch', 'Switch') { 'SwitchParameter' } else { $Type }
}

function Add-Parameter($Parent, $Parameter, $Variant, [bool] $InSyntax) {
    $p = Add-Element $Parent 'command' 'parameter' $CommandNs
    $p.SetAttribute('required', $Variant.Required.ToString().ToLowerInvariant())
    $p.SetAttribute('variableLength', 'true')
    $p.SetAttribute('globbing', $Variant.Globbing.ToString().ToLowerInvariant())
    $p.SetAttribute('pipelineInput', $Variant.PipelineInput)
    $p.SetAttribute('position', $Variant.Position.ToLowerInvariant())
    $p.SetAttribute('aliases', $(if ($Variant.Aliases.Count) { $Variant.Aliases -join ', ' } else { 'none' }))
    [void](Add-Element $p 'maml' 'name' $MamlNs $Parameter.Name)
    Add-Description $p $Parameter.Description
    $type = Get-MamlType $Variant.Type
    $isSwitch = $type -eq 'SwitchParameter'
    if ($InSyntax -and $Variant.AcceptedValues.Count) {
        $group = Add-Element $p 'command' 'parameterValueGroup' $CommandNs
        foreach ($v in $Variant.AcceptedValues) {
            $pv = Add-Element $group 'command' 'parameterValue' $CommandNs $v
            $pv.SetAttribute('required', 'false'); $pv.SetAttribute('variableLength', 'false')
        }
    }
    # Inside a syntax block a switch has no value, or Get-Help would print "-Quiet <SwitchParameter>".
    if (-not ($InSyntax -and $isSwitch)) {
        $pv = Add-Element $p 'command' 'parameterValue' $CommandNs $type
        $pv.SetAttribute('required', $(if ($isSwitch) { 'false' } else { 'true' }))
        $pv.SetAttribute('variableLength', 'false')
    }
    $t = Add-Element $p 'dev' 'type' $DevNs
    [void](Add-Element $t 'maml' 'name' $MamlNs $type)
    [void](Add-Element $t 'maml' 'uri' $MamlNs '')
    [void](Add-Element $p 'dev' 'defaultValue' $DevNs $(if ($Variant.Default) { $Variant.Default } else { 'None' }))
}

function Get-Variant($Parameter, [string] $SetName) {
    $v = $Parameter.Variants | Where-Object { $_.Sets -contains $SetName } | Select-Object -First 1
    if (-not $v) { $v = $Parameter.Variants | Where-Object { $_.Sets -contains '(All)' } | Select-Object -First 1 }
    $v
}

function Add-Command($Root, $Cmd) {
    $c = Add-Element $Root 'command' 'command' $CommandNs
    foreach ($ns in @(@('maml', $MamlNs), @('command', $CommandNs), @('dev', $DevNs), @('MSHelp', $MsHelpNs))) {
        $c.SetAttribute("xmlns:$($ns[0])", $ns[1])
    }
    $details = Add-Element $c 'command' 'details' $CommandNs
    [void](Add-Element $details 'command' 'name' $CommandNs $Cmd.Name)
    $verb, $noun = $Cmd.Name -split '-', 2
    [void](Add-Element $details 'command' 'verb' $CommandNs $verb)
    [void](Add-Element $details 'command' 'noun' $CommandNs $noun)
    Add-Description $details $Cmd.Synopsis
    Add-Description $c $Cmd.Description

    $syntax = Add-Element $c 'command' 'syntax' $CommandNs
    foreach ($set in $Cmd.Sets) {
        $item = Add-Element $syntax 'command' 'syntaxItem' $CommandNs
        [void](Add-Element $item 'maml' 'name' $MamlNs $Cmd.Name)
        $members = foreach ($p in $Cmd.Parameters) {
            $v = Get-Variant $p $set.Name
            if ($v) { [pscustomobject]@{ P = $p; V = $v } }
        }
        # Positional parameters first, by position, then the named ones in the order the markdown lists them.
        $ordered = @(@($members | Where-Object { $_.V.Position -ne 'Named' } | Sort-Object { [int]$_.V.Position }) +
            @($members | Where-Object { $_.V.Position -eq 'Named' }))
        foreach ($m in $ordered) { if ($m) { Add-Parameter $item $m.P $m.V $true } }
    }

    $params = Add-Element $c 'command' 'parameters' $CommandNs
    foreach ($p in $Cmd.Parameters) { Add-Parameter $params $p $p.Variants[0] $false }

    $inputs = Add-Element $c 'command' 'inputTypes' $CommandNs
    foreach ($i in $Cmd.Inputs) {
        $it = Add-Element $inputs 'command' 'inputType' $CommandNs
        $t = Add-Element $it 'dev' 'type' $DevNs
        [void](Add-Element $t 'maml' 'name' $MamlNs $i.TypeName)
        Add-Description $it $i.Description
    }
    $outputs = Add-Element $c 'command' 'returnValues' $CommandNs
    foreach ($o in $Cmd.Outputs) {
        $rv = Add-Element $outputs 'command' 'returnValue' $CommandNs
        $t = Add-Element $rv 'dev' 'type' $DevNs
        [void](Add-Element $t 'maml' 'name' $MamlNs $o.TypeName)
        Add-Description $rv $o.Description
    }
    $alertSet = Add-Element $c 'maml' 'alertSet' $MamlNs
    $alert = Add-Element $alertSet 'maml' 'alert' $MamlNs
    Add-Paragraphs $alert $Cmd.Notes

    $examples = Add-Element $c 'command' 'examples' $CommandNs
    foreach ($e in $Cmd.Examples) {
        $ex = Add-Element $examples 'command' 'example' $CommandNs
        $dashes = [Math]::Max(1, [int][Math]::Floor((64 - $e.Title.Length - 2) / 2))
        [void](Add-Element $ex 'maml' 'title' $MamlNs ("$('-' * $dashes) $($e.Title) $('-' * $dashes)"))
        [void](Add-Element $ex 'dev' 'code' $DevNs $e.Code)
        $remarks = Add-Element $ex 'dev' 'remarks' $DevNs
        Add-Paragraphs $remarks $e.Remarks
        # A trailing empty paragraph is what makes Get-Help leave a blank line before the next example.
        if ($e.Remarks.Count) { [void](Add-Element $remarks 'maml' 'para' $MamlNs '') }
    }
    $links = Add-Element $c 'command' 'relatedLinks' $CommandNs
    foreach ($l in $Cmd.Links) {
        $nl = Add-Element $links 'maml' 'navigationLink' $MamlNs
        [void](Add-Element $nl 'maml' 'linkText' $MamlNs $l.Text)
        [void](Add-Element $nl 'maml' 'uri' $MamlNs $l.Uri)
    }
}

function Write-MamlFile($Commands, [string] $Path) {
    $doc = [System.Xml.XmlDocument]::new()
    [void]$doc.AppendChild($doc.CreateXmlDeclaration('1.0', 'utf-8', $null))
    $root = $doc.CreateElement('helpItems', 'http://msh')
    $root.SetAttribute('schema', 'maml')
    [void]$doc.AppendChild($root)
    foreach ($cmd in $Commands) { Add-Command $root $cmd }

    $settings = [System.Xml.XmlWriterSettings]::new()
    $settings.Indent = $true
    $settings.IndentChars = '  '
    $settings.NewLineChars = "`n"
    $settings.Encoding = [System.Text.UTF8Encoding]::new($false)
    $writer = [System.Xml.XmlWriter]::Create($Path, $settings)
    try { $doc.Save($writer) } finally { $writer.Dispose() }
}

#endregion

#region About topics

function Convert-AboutDoc($Doc) {
    $file = $Doc.File
    $blocks = $Doc.Blocks
    $expected = [System.IO.Path]::GetFileNameWithoutExtension($file)
    if ($blocks.Count -eq 0 -or $blocks[0].Kind -ne 'Heading' -or $blocks[0].Level -ne 1) {
        Stop-Malformed $file $(if ($blocks.Count) { $blocks[0].Line } else { 1 }) "an about topic starts with '# $expected'."
    }
    if ($blocks[0].Text -ne $expected) { Stop-Malformed $file $blocks[0].Line "the title '# $($blocks[0].Text)' does not match the file name '$expected'." }

    $heads = @($blocks | Where-Object { $_.Kind -eq 'Heading' -and $_.Level -eq 2 })
    $short = $heads | Where-Object { $_.Text -match '^short description$' } | Select-Object -First 1
    $long = $heads | Where-Object { $_.Text -match '^long description$' } | Select-Object -First 1
    if (-not $short) { Stop-Malformed $file $blocks[0].Line "missing '## Short description'." }
    if (-not $long) { Stop-Malformed $file $blocks[0].Line "missing '## Long description'." }
    if ([array]::IndexOf($heads, $short) -ne 0) { Stop-Malformed $file $heads[0].Line "'## Short description' must be the first section." }
    $shortIndex = [array]::IndexOf($blocks, $short)
    $shortText = if ($shortIndex + 1 -lt $blocks.Count -and $blocks[$shortIndex + 1].Kind -eq 'Paragraph') { ConvertTo-PlainText $blocks[$shortIndex + 1].Text }
    if (-not $shortText) { Stop-Malformed $file $short.Line 'the short description is empty.' }
    if ($shortIndex + 2 -lt $blocks.Count -and -not ($blocks[$shortIndex + 2].Kind -eq 'Heading' -and $blocks[$shortIndex + 2].Level -le 2)) {
        Stop-Malformed $file $blocks[$shortIndex + 2].Line 'the short description is one paragraph.'
    }

    $out = [System.Collections.Generic.List[string]]::new()
    # Get-Help shows line 5 of an about file as the topic's synopsis: TOPIC / name / blank / SHORT DESCRIPTION / text.
    $out.Add('TOPIC'); $out.Add("    $expected"); $out.Add(''); $out.Add('SHORT DESCRIPTION'); $out.Add("    $shortText")
    for ($k = $shortIndex + 2; $k -lt $blocks.Count; $k++) {
        $b = $blocks[$k]
        switch ($b.Kind) {
            'Heading' {
                if ($b.Level -eq 1) { Stop-Malformed $file $b.Line "a second '# ' title." }
                $out.Add('')
                if ($b.Level -eq 2) { $out.Add((ConvertTo-PlainText $b.Text).ToUpperInvariant()) }
                else { $out.Add('    ' + (ConvertTo-PlainText $b.Text)) }
            }
            'Paragraph' { $out.Add(''); $out.AddRange([string[]](Format-Wrapped (ConvertTo-PlainText $b.Text) 4 $AboutWidth)) }
            'ListItem' {
                $prev = $blocks[$k - 1]
                if ($prev.Kind -ne 'ListItem') { $out.Add('') }
                $marker = if ($b.Marker -match '^\d') { $b.Marker } else { '-' }
                $indent = 4 + $b.Indent
                $out.AddRange([string[]](Format-Wrapped ("$marker " + (ConvertTo-PlainText $b.Text)) $indent $AboutWidth ($indent + $marker.Length + 1)))
            }
            'Code' { $out.Add(''); foreach ($l in $b.Text -split "`n") { $out.Add(("        $l").TrimEnd()) } }
            'Table' { $out.Add(''); $out.AddRange([string[]](Format-TextTable $b 4 $AboutWidth)) }
            'Rule' { }
        }
    }
    $out.Add('')
    $out.ToArray()
}

#endregion

if (-not (Test-Path -LiteralPath $DocsPath -PathType Container)) { throw "DocsPath '$DocsPath' is not a folder." }
$docsFull = (Resolve-Path -LiteralPath $DocsPath).Path
if ($AsModel) {
    foreach ($md in Get-ChildItem -LiteralPath $docsFull -Filter '*.md' -File | Sort-Object Name) {
        if ($md.BaseName -like 'about_*') { continue }
        $doc = Read-MarkdownFile $md.FullName
        if (-not $doc.Front.Contains('Module Guid')) { Read-CmdletDoc $doc }
    }
    return
}
New-Item -ItemType Directory -Force -Path $OutputPath | Out-Null
$outFull = (Resolve-Path -LiteralPath $OutputPath).Path

$commands = [System.Collections.Generic.List[object]]::new()
$written = [System.Collections.Generic.List[string]]::new()
foreach ($md in Get-ChildItem -LiteralPath $docsFull -Filter '*.md' -File | Sort-Object Name) {
    $doc = Read-MarkdownFile $md.FullName
    if ($md.BaseName -like 'about_*') {
        $txt = Join-Path $outFull "$($md.BaseName).help.txt"
        [System.IO.File]::WriteAllText($txt, ((Convert-AboutDoc $doc) -join "`n"), [System.Text.UTF8Encoding]::new($false))
        $written.Add($txt)
        Write-Verbose "about topic: $($md.Name) -> $txt"
        continue
    }
    if ($doc.Front.Contains('Module Guid')) { Write-Verbose "module page skipped: $($md.Name)"; continue }
    $cmd = Read-CmdletDoc $doc
    $commands.Add($cmd)
    Write-Verbose "cmdlet help: $($md.Name) ($($cmd.Parameters.Count) parameters, $($cmd.Examples.Count) examples)"
}
if ($commands.Count -eq 0) { throw "No cmdlet markdown (schema 2.0.0) in '$docsFull'." }

$maml = Join-Path $outFull "$ModuleName.dll-Help.xml"
Write-MamlFile $commands $maml
$written.Insert(0, $maml)
# Reload what was written: a file Get-Help cannot parse must fail the build here, not at the admin's prompt.
[void]([xml][System.IO.File]::ReadAllText($maml))
Write-Verbose "MAML: $maml ($($commands.Count) commands)"
if ($PassThru) { $written | ForEach-Object { Get-Item -LiteralPath $_ } }
